using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VarSharp.Evaluation;

/// <summary>
/// A small CNN trained by us on Fashion-MNIST (32×32, padded) that scores generated images: its predictions give the
/// class consistency of conditional samples and its 256-d penultimate features feed the Fréchet distance and
/// precision/recall. It is a domain-specific judge, not Inception: figures computed with it are not comparable to FID.
/// Input: (B, 1 or 3, S, S) in [−1, 1] with S the image size (32 for Fashion-MNIST; any multiple of 8 for tests);
/// RGB is averaged to one channel.
/// </summary>
public sealed partial class FashionClassifier : nn.Module<Tensor, Tensor>
{
    public const int DefaultImageSize = 32;
    public const int FeatureDim = 256;
    public const int DefaultNumClasses = 10;

    private readonly Conv2d conv1a, conv1b, conv2a, conv2b, conv3;
    private readonly Linear fc, head;

    /// <param name="imageSize">Side of the square input, a positive multiple of 8 (three 2× poolings).</param>
    /// <param name="numClasses">Classes the head predicts (at least 2).</param>
    public FashionClassifier(int imageSize = DefaultImageSize, int numClasses = DefaultNumClasses, Device? device = null)
        : base(nameof(FashionClassifier))
    {
        if (imageSize <= 0 || imageSize % 8 != 0)
            throw new VarSharpException($"The classifier's image size must be a positive multiple of 8 but is {imageSize}.");
        if (numClasses < 2) throw new VarSharpException($"The classifier needs at least 2 classes but was given {numClasses}.");
        ImageSize = imageSize;
        NumClasses = numClasses;
        int cells = imageSize / 8;
        conv1a = nn.Conv2d(1, 32, 3, 1, 1, device: device);
        conv1b = nn.Conv2d(32, 32, 3, 1, 1, device: device);
        conv2a = nn.Conv2d(32, 64, 3, 1, 1, device: device);
        conv2b = nn.Conv2d(64, 64, 3, 1, 1, device: device);
        conv3 = nn.Conv2d(64, 128, 3, 1, 1, device: device);
        fc = nn.Linear(128 * cells * cells, FeatureDim, device: device);
        head = nn.Linear(FeatureDim, numClasses, device: device);
        RegisterComponents();
    }

    public int ImageSize { get; }
    public int NumClasses { get; }

    /// <summary>Where the weights live.</summary>
    public Device Device => head.weight!.device;

    /// <summary>What the bundle says about this classifier; null for one built in memory.</summary>
    public ClassifierInfo? Info { get; private set; }

    /// <summary>SHA-256 of the bundle's weights file (from its verified manifest); null for one built in memory.</summary>
    public string? WeightsDigest { get; private set; }

    /// <summary>
    /// PyTorch's default init for conv and linear layers (uniform ±1/√fan_in for weights and biases), drawn from the
    /// given generator rather than the global one, so that training is reproducible while other work runs.
    /// </summary>
    public void InitWeights(Generator generator)
    {
        using var noGrad = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            var layer = name[..name.LastIndexOf('.')];
            var weight = named_parameters().First(q => q.name == layer + ".weight").parameter;
            double bound = 1.0 / Math.Sqrt(weight.shape.Skip(1).Aggregate(1L, (a, b) => a * b));
            p.uniform_(-bound, bound, generator);
        }
    }

    /// <summary>Penultimate features (B, 256).</summary>
    public Tensor Features(Tensor img_BCHW)
    {
        if (img_BCHW.dim() != 4 || img_BCHW.shape[2] != ImageSize || img_BCHW.shape[3] != ImageSize || img_BCHW.shape[1] is not (1 or 3))
            throw new VarSharpException($"The Fashion-MNIST classifier needs images of shape (B, 1 or 3, {ImageSize}, {ImageSize}) but got ({string.Join(", ", img_BCHW.shape)}).");
        using var scope = NewDisposeScope();
        var x = img_BCHW.shape[1] == 3 ? img_BCHW.mean([1L], keepdim: true) : img_BCHW;
        x = F.relu(conv1b.call(F.relu(conv1a.call(x))));
        x = F.max_pool2d(x, 2);
        x = F.relu(conv2b.call(F.relu(conv2a.call(x))));
        x = F.max_pool2d(x, 2);
        x = F.max_pool2d(F.relu(conv3.call(x)), 2);
        return F.relu(fc.call(x.flatten(1))).MoveToOuterDisposeScope();
    }

    /// <summary>Class logits (B, classes).</summary>
    public override Tensor forward(Tensor img_BCHW)
    {
        using var features = Features(img_BCHW);
        return head.call(features);
    }

    /// <summary>Class logits of penultimate features (B, 256) → (B, classes).</summary>
    public Tensor Head(Tensor features_BD) => head.call(features_BD);

    /// <summary>
    /// Features (N, 256) and predicted classes (N) of a batch of images, <paramref name="batchSize"/> at a time,
    /// without gradients; the model is switched to eval mode. Chunks go to the classifier's device; the results are on
    /// the CPU, where the metrics are computed.
    /// </summary>
    public (Tensor Features_ND, Tensor Predictions_N) Embed(Tensor images_NCHW, int batchSize = 256)
    {
        eval();
        using var noGrad = no_grad();
        var features = new List<Tensor>();
        var predictions = new List<Tensor>();
        try
        {
            long n = images_NCHW.shape[0];
            for (long s = 0; s < n; s += batchSize)
            {
                using var scope = NewDisposeScope();
                var chunk = images_NCHW.narrow(0, s, Math.Min(batchSize, n - s)).to(Device);
                var f = Features(chunk);
                features.Add(f.cpu().DetachFromDisposeScope());
                predictions.Add(head.call(f).argmax(1).cpu().DetachFromDisposeScope());
            }
            if (features.Count == 0) return (zeros(0, FeatureDim), zeros(0, dtype: int64));
            return (cat(features, 0), cat(predictions, 0));
        }
        finally
        {
            foreach (var t in features) t.Dispose();
            foreach (var t in predictions) t.Dispose();
        }
    }
}
