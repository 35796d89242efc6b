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
}
