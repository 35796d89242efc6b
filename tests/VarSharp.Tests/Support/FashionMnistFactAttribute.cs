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

/// <summary>A fact that needs both the real Fashion-MNIST files and the shared golden cases.</summary>
public sealed class FashionMnistGoldenFactAttribute : FactAttribute
{
    public FashionMnistGoldenFactAttribute()
    {
        var fashion = new FashionMnistFactAttribute();
        if (fashion.Skip is not null) Skip = fashion.Skip;
        else if (!SharedData.HasGolden) Skip = SharedData.MissingMessage;
    }
}

/// <summary>Real Fashion-MNIST cut down to a few hundred images, in the same idx layout, for fast end-to-end tests.</summary>
public static class FashionMnistSubset
{
    public static string Write(string dir, int train, int test)
    {
        Directory.CreateDirectory(dir);
        foreach (var (prefix, n) in new[] { ("train", train), ("t10k", test) })
            foreach (var kind in new[] { "images-idx3", "labels-idx1" })
            {
                var name = $"{prefix}-{kind}-ubyte.gz";
                var full = IdxFile.Read(Path.Combine(FashionMnist.DefaultDirectory, name));
                int per = full.Dims.Skip(1).Aggregate(1, (a, b) => a * b);
                IdxFile.Write(Path.Combine(dir, name), [n, .. full.Dims.Skip(1)], full.Data.AsSpan(0, n * per));
            }
        return dir;
    }
}
