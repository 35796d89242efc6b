using System.Text.Json.Serialization;

namespace VarSharp.Evaluation;

/// <summary>
/// The `classifier` block of a classifier bundle's config.json: what the network is (kind, image size, feature and
/// class counts, class names) and how it was trained and scored (seed, epochs, …, test accuracy).
/// </summary>
public sealed record ClassifierInfo
{
    /// <summary>The architecture; the only one this version knows.</summary>
    public const string FashionCnn = "fashion-cnn";

    public string Kind { get; init; } = FashionCnn;
    public int ImageSize { get; init; } = FashionClassifier.DefaultImageSize;
    public int FeatureDim { get; init; } = FashionClassifier.FeatureDim;
    public int NumClasses { get; init; } = FashionClassifier.DefaultNumClasses;
    public IReadOnlyList<string> ClassNames { get; init; } = [];

    /// <summary>Top-1 accuracy on the test split, measured after training; null when not measured.</summary>
    public double? TestAccuracy { get; init; }

    /// <summary>How many test images <see cref="TestAccuracy"/> was measured on.</summary>
    public int? TestImages { get; init; }

    public ulong Seed { get; init; }
    public int Epochs { get; init; }
    public int BatchSize { get; init; }
    public double Lr { get; init; }
    public double WeightDecay { get; init; }
    public int TrainImages { get; init; }

    /// <summary>The training data, e.g. "Fashion-MNIST train (60000 images 28×28, padded to 32×32)".</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Data { get; init; }

    /// <summary>Throws a one-sentence <see cref="VarSharpException"/> unless this block describes a classifier this version can build.</summary>
    public ClassifierInfo Validate(string where)
    {
        if (Kind != FashionCnn) throw new VarSharpException($"{where} describes a classifier of kind '{Kind}'; this version knows only '{FashionCnn}'.");
        if (FeatureDim != FashionClassifier.FeatureDim)
            throw new VarSharpException($"{where} gives feature_dim {FeatureDim} but the {FashionCnn} classifier has {FashionClassifier.FeatureDim} features.");
        if (ImageSize <= 0 || ImageSize % 8 != 0) throw new VarSharpException($"{where} gives image_size {ImageSize}; expected a positive multiple of 8.");
        if (NumClasses < 2) throw new VarSharpException($"{where} gives num_classes {NumClasses}; expected at least 2.");
        if (ClassNames.Count != 0 && ClassNames.Count != NumClasses)
            throw new VarSharpException($"{where} lists {ClassNames.Count} class names for {NumClasses} classes.");
        return this;
    }
}
