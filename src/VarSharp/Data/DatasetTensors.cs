using static TorchSharp.torch;

namespace VarSharp.Data;

/// <summary>Reads (parts of) a dataset into memory as tensors, in the deterministic evaluation view (no augmentation).</summary>
public static class DatasetTensors
{
    /// <summary>
    /// Images (N, C, S, S) float32 in [−1, 1] and labels (N) int64 of the samples at <paramref name="indices"/>
    /// (all samples, in order, when null).
    /// </summary>
    public static (Tensor Images, Tensor Labels) Load(IImageDataset data, IReadOnlyList<int>? indices = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        indices ??= Enumerable.Range(0, data.Count).ToArray();
        int c = data.Channels, s = data.ImageSize, per = c * s * s, n = indices.Count;
        var pixels = new float[checked(n * per)];
        var labels = new long[n];
        for (int i = 0; i < n; i++)
        {
            data.Fill(indices[i], null, pixels.AsSpan(i * per, per));
            labels[i] = data.Label(indices[i]);
        }
        return (tensor(pixels, [n, c, s, s]), tensor(labels, [n]));
    }

    /// <summary>
    /// The first <paramref name="perClass"/> samples of each class in 0 … <paramref name="classes"/> − 1, class-major
    /// (all of class 0, then class 1, …); throws when a class has fewer.
    /// </summary>
    public static int[] FirstPerClass(IImageDataset data, int classes, int perClass)
    {
        ArgumentNullException.ThrowIfNull(data);
        var picked = new List<int>[classes];
        for (int c = 0; c < classes; c++) picked[c] = new List<int>(perClass);
        for (int i = 0; i < data.Count; i++)
        {
            int label = data.Label(i);
            if (label >= 0 && label < classes && picked[label].Count < perClass) picked[label].Add(i);
        }
        for (int c = 0; c < classes; c++)
            if (picked[c].Count < perClass)
                throw new VarSharpException($"{data.Description} has {picked[c].Count} image(s) of class {c} but {perClass} per class were asked for.");
        return picked.SelectMany(p => p).ToArray();
    }
}
