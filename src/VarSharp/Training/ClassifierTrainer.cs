using TorchSharp;
using VarSharp.Evaluation;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace VarSharp.Training;

public sealed record ClassifierTrainOptions
{
    public int Epochs { get; init; } = 4;
    public int BatchSize { get; init; } = 128;
    public double LearningRate { get; init; } = 2e-3;
    public double WeightDecay { get; init; } = 1e-4;
    public ulong Seed { get; init; } = 1;
    public int NumClasses { get; init; } = FashionClassifier.DefaultNumClasses;

    /// <summary>Throws a one-sentence <see cref="VarSharpException"/> for values training cannot use.</summary>
    public ClassifierTrainOptions Validate()
    {
        if (Epochs < 1) throw new VarSharpException($"epochs must be at least 1 but is {Epochs}.");
        if (BatchSize < 1) throw new VarSharpException($"batch size must be at least 1 but is {BatchSize}.");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new VarSharpException($"learning rate must be a positive number but is {LearningRate}.");
        if (!(WeightDecay >= 0) || double.IsInfinity(WeightDecay)) throw new VarSharpException($"weight decay must be a number ≥ 0 but is {WeightDecay}.");
        return this;
    }
}

/// <summary>
/// Trains the Fashion-MNIST judge (<see cref="FashionClassifier"/>) on in-memory tensors: AdamW with cosine decay,
/// a seeded shuffle per epoch and a random ±2-pixel shift as augmentation (also seeded), so the same seed and thread
/// count give the same weights.
/// </summary>
public static class ClassifierTrainer
{
    public static FashionClassifier Train(Tensor images_N1HW, Tensor labels_N, ClassifierTrainOptions options,
        Action<int, int, double>? onProgress = null, Device? device = null)
    {
        if (images_N1HW.shape[0] != labels_N.shape[0] || images_N1HW.shape[0] == 0)
            throw new VarSharpException($"Expected as many labels as images (and at least one) but got {images_N1HW.shape[0]} images and {labels_N.shape[0]} labels.");
        if (images_N1HW.dim() != 4 || images_N1HW.shape[2] != images_N1HW.shape[3])
            throw new VarSharpException($"Expected square images (N, C, S, S) but got ({string.Join(", ", images_N1HW.shape)}).");
        options.Validate();
        using (var maxT = labels_N.max())
        using (var minT = labels_N.min())
        {
            long maxLabel = maxT.item<long>(), minLabel = minT.item<long>();
            if (maxLabel >= options.NumClasses || minLabel < 0)
                throw new VarSharpException($"Labels must lie in 0 to {options.NumClasses - 1} but range from {minLabel} to {maxLabel}.");
        }
        var generator = new Generator(options.Seed);
        var model = TrainDevice.Create(() => new FashionClassifier((int)images_N1HW.shape[2], options.NumClasses), m => m.InitWeights(generator), device ?? CPU);
        long n = images_N1HW.shape[0];
        int stepsPerEpoch = (int)((n + options.BatchSize - 1) / options.BatchSize);
        int total = stepsPerEpoch * options.Epochs;
        using var optimizer = optim.AdamW(model.parameters(), options.LearningRate, weight_decay: options.WeightDecay);
        model.train();
        int step = 0;
        for (int epoch = 0; epoch < options.Epochs; epoch++)
        {
            using var order = randperm(n, generator: generator);
            for (int s = 0; s < stepsPerEpoch; s++, step++)
            {
                using var scope = NewDisposeScope();
                var idx = order.narrow(0, s * options.BatchSize, Math.Min(options.BatchSize, n - s * options.BatchSize));
                var x = Shift(images_N1HW.index_select(0, idx), generator).to(device ?? CPU);
                var y = labels_N.index_select(0, idx).to(device ?? CPU);
                double lr = options.LearningRate * 0.5 * (1 + Math.Cos(Math.PI * step / total));
                foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
                optimizer.zero_grad();
                var loss = F.cross_entropy(model.call(x), y);
                loss.backward();
                optimizer.step();
                if (onProgress is not null && (step % 50 == 0 || step == total - 1)) onProgress(step + 1, total, loss.item<float>());
            }
        }
        model.eval();
        return model;
    }

    /// <summary>Random translation by up to 2 pixels, padding with the background value −1.</summary>
    private static Tensor Shift(Tensor x_BCHW, Generator generator)
    {
        using var offsets = randint(0, 5, [2], generator: generator);
        long dy = offsets[0].item<long>() - 2, dx = offsets[1].item<long>() - 2;
        long h = x_BCHW.shape[2], w = x_BCHW.shape[3];
        var padded = F.pad(x_BCHW, [2, 2, 2, 2], value: -1);
        return padded.narrow(2, 2 + dy, h).narrow(3, 2 + dx, w);
    }

    /// <summary>Top-1 accuracy of the classifier on a labelled set.</summary>
    public static double Accuracy(FashionClassifier model, Tensor images_NCHW, Tensor labels_N, int batchSize = 512)
    {
        using var noGrad = no_grad();
        long correct = 0, n = images_NCHW.shape[0];
        for (long s = 0; s < n; s += batchSize)
        {
            using var scope = NewDisposeScope();
            var len = Math.Min(batchSize, n - s);
            var pred = model.call(images_NCHW.narrow(0, s, len).to(model.Device)).argmax(1).cpu();
            correct += pred.eq(labels_N.narrow(0, s, len).cpu()).sum().item<long>();
        }
        return (double)correct / n;
    }
}
