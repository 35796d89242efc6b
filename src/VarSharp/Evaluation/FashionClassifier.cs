using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VarSharp.Evaluation;

/// <summary>
/// A small CNN trained by us on Fashion-MNIST (32×32, padded) that scores generated images: its predictions give the
/// class consistency of conditional samples and its 256-d penultimate features feed the Fréchet distance and
/// precision/recall. It is a domain-specific judge, not Inception: figures computed with it are not comparable to FID.
/// Input: (B, 1 or 3, 32, 32) in [−1, 1]; RGB is averaged to one channel.
/// </summary>
public sealed class FashionClassifier : nn.Module<Tensor, Tensor>
{
    public const int ImageSize = 32;
    public const int FeatureDim = 256;
    public const int NumClasses = 10;

    private readonly Conv2d conv1a, conv1b, conv2a, conv2b, conv3;
    private readonly Linear fc, head;

    public FashionClassifier(Device? device = null) : base(nameof(FashionClassifier))
    {
        conv1a = nn.Conv2d(1, 32, 3, 1, 1, device: device);
        conv1b = nn.Conv2d(32, 32, 3, 1, 1, device: device);
        conv2a = nn.Conv2d(32, 64, 3, 1, 1, device: device);
        conv2b = nn.Conv2d(64, 64, 3, 1, 1, device: device);
        conv3 = nn.Conv2d(64, 128, 3, 1, 1, device: device);
        fc = nn.Linear(128 * 4 * 4, FeatureDim, device: device);
        head = nn.Linear(FeatureDim, NumClasses, device: device);
        RegisterComponents();
    }

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

    /// <summary>Class logits (B, 10).</summary>
    public override Tensor forward(Tensor img_BCHW)
    {
        using var features = Features(img_BCHW);
        return head.call(features);
    }
}
