using VarSharp.Data;

namespace VarSharp.Tests.Support;

/// <summary>A fact that needs the real Fashion-MNIST idx files; reported as skipped, naming the folder, when they are absent.</summary>
public sealed class FashionMnistFactAttribute : FactAttribute
{
    public FashionMnistFactAttribute()
    {
        if (!FashionMnist.IsIdxFolder(FashionMnist.DefaultDirectory) || !File.Exists(Path.Combine(FashionMnist.DefaultDirectory, "t10k-labels-idx1-ubyte.gz")))
            Skip = $"Fashion-MNIST not found at {FashionMnist.DefaultDirectory} (apt-get install dataset-fashion-mnist)";
    }
}
