using VarSharp.Config;
using VarSharp.Data;

namespace VarSharp.Tests.Support;

/// <summary>Small synthetic datasets written to disk: idx folders in the Fashion-MNIST layout and image folders.</summary>
public static class TinyData
{
    /// <summary>Writes train/t10k idx files of <paramref name="size"/>² images: soft blobs whose position depends on the label.</summary>
    public static string WriteIdxFolder(string dir, int train = 24, int test = 8, int size = 8, int seed = 1, bool gzip = true)
    {
        Directory.CreateDirectory(dir);
        var rng = new Random(seed);
        foreach (var (prefix, n) in new[] { ("train", train), ("t10k", test) })
        {
            var pixels = new byte[n * size * size];
            var labels = new byte[n];
            for (int i = 0; i < n; i++)
            {
                labels[i] = (byte)(i % 10);
                double cx = rng.NextDouble() * size, cy = rng.NextDouble() * size, r = 1 + rng.NextDouble() * size / 3;
                for (int y = 0; y < size; y++)
                    for (int x = 0; x < size; x++)
                    {
                        double d2 = ((x - cx) * (x - cx) + (y - cy) * (y - cy)) / (r * r);
                        pixels[i * size * size + y * size + x] = (byte)Math.Clamp(255 * Math.Exp(-d2) + rng.Next(8), 0, 255);
                    }
            }
            string ext = gzip ? ".gz" : "";
            IdxFile.Write(Path.Combine(dir, $"{prefix}-images-idx3-ubyte{ext}"), [n, size, size], pixels);
            IdxFile.Write(Path.Combine(dir, $"{prefix}-labels-idx1-ubyte{ext}"), [n], labels);
        }
        return dir;
    }

    /// <summary>
    /// An image folder (train/a, train/b; 8×8 PNGs) with one file, 1-cut.png, whose header survives (it passes the scan
    /// when the data is opened) but whose pixels are cut off (it fails when a batch first decodes it).
    /// </summary>
    public static string WriteImageFolderWithACutFile(string dir, int channels)
    {
        for (int i = 0; i < 8; i++) TinyModelFolder.WritePng(Path.Combine(dir, "train", i % 2 == 0 ? "a" : "b", $"{i}.png"), 8, channels);
        var whole = File.ReadAllBytes(Path.Combine(dir, "train", "a", "0.png"));
        File.WriteAllBytes(Path.Combine(dir, "train", "a", "1-cut.png"), whole.AsSpan(0, whole.Length - 16).ToArray());
        return dir;
    }

    /// <summary>A training config for <see cref="TinyConfigs.VqVae"/> on <see cref="WriteIdxFolder"/> data that runs in well under a second.</summary>
    public static TokenizerTrainConfig TrainConfig(string data, int steps = 6) => new()
    {
        Data = data,
        Steps = steps,
        BatchSize = 4,
        Lr = 3e-3,
        WarmupSteps = 2,
        LogEvery = 1,
        EvalEvery = 3,
        EvalImages = 4,
        GridImages = 2,
        CheckpointEvery = 3,
        KeepCheckpoints = 10,
        DeadCodeEvery = 2,
        Seed = 7,
    };
}
