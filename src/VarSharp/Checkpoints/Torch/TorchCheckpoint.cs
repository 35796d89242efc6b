using TorchSharp;
using static TorchSharp.torch;

namespace VarSharp.Checkpoints.Torch;

/// <summary>Name, dtype and shape of one tensor in a checkpoint, read without loading any tensor data.</summary>
public sealed record TorchTensorInfo(string Name, ScalarType DType, long[] Shape);

/// <summary>
/// Reads PyTorch checkpoints (torch.save of a state dict) without executing them: the zip layout
/// (`prefix/data.pkl` + `prefix/data/&lt;key&gt;`) and the legacy stream of pickles, both through one restricted
/// unpickler whose only callables are collections.OrderedDict, torch._utils._rebuild_tensor_v2 and
/// torch._utils._rebuild_parameter, and whose only other globals are the torch.*Storage types. Every refusal is a
/// <see cref="TorchCheckpointException"/>. Nothing is returned unless every tensor loaded: there is no partial result.
/// </summary>
public static class TorchCheckpoint
{
    /// <summary>The largest data.pkl accepted; a state dict of ten thousand tensors needs about 2 MB.</summary>
    public const long MaxPickleBytes = 256L << 20;

    /// <summary>Names, dtypes and shapes of every tensor, after checking the container, the pickle and every storage's
    /// size and bounds; tensor bytes (and their CRCs) are not read.</summary>
    public static IReadOnlyList<TorchTensorInfo> ReadLayout(string path)
    {
        using var stream = OpenRead(path);
        return ReadLayout(stream, path);
    }

    /// <inheritdoc cref="ReadLayout(string)"/>
    public static IReadOnlyList<TorchTensorInfo> ReadLayout(Stream stream, string displayName)
    {
        var parsed = Guard(displayName, () => TorchCheckpointParser.Parse(stream, displayName));
        return parsed.Tensors.Select(t => new TorchTensorInfo(t.Name, t.Tensor.Storage.DType.ScalarType, (long[])t.Tensor.Size.Clone())).ToList();
    }

    /// <summary>Loads every tensor of a state dict onto the CPU, keeping its dtype, in pickle order, each key prefixed with
    /// <paramref name="keyPrefix"/>. Views are materialised as contiguous tensors.</summary>
    public static Dictionary<string, Tensor> Load(string path, string keyPrefix = "")
    {
        using var stream = OpenRead(path);
        return Load(stream, path, keyPrefix);
    }

    /// <inheritdoc cref="Load(string, string)"/>
    public static Dictionary<string, Tensor> Load(Stream stream, string displayName, string keyPrefix = "") =>
        Load(stream, displayName, keyPrefix, out _);

    /// <summary>As <see cref="Load(Stream, string, string)"/>, also reporting the bytes of tensor memory it allocated.</summary>
    internal static Dictionary<string, Tensor> Load(Stream stream, string displayName, string keyPrefix, out long tensorBytesAllocated)
    {
        long allocated = 0;
        var result = Guard(displayName, () =>
        {
            var parsed = TorchCheckpointParser.Parse(stream, displayName);
            return TorchCheckpointParser.Materialize(parsed, displayName, keyPrefix, out allocated);
        });
        tensorBytesAllocated = allocated;
        return result;
    }

    private static T Guard<T>(string file, Func<T> body)
    {
        if (!BitConverter.IsLittleEndian)
            throw new TorchCheckpointException(TorchCheckpointReason.UnsupportedByteOrder, $"{file}: this reader needs a little-endian host.");
        try
        {
            return body();
        }
        catch (EndOfStreamException e)
        {
            throw new TorchCheckpointException(TorchCheckpointReason.ZipCorrupt, $"{file}: the file ended while a record was being read, so it changed during loading or is truncated.", e);
        }
    }

    private static FileStream OpenRead(string path)
    {
        if (Directory.Exists(path)) throw new VarSharpException($"{path}: expected a PyTorch checkpoint file but found a directory.");
        if (!File.Exists(path)) throw new VarSharpException($"{path}: the checkpoint file does not exist.");
        return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 4096, FileOptions.SequentialScan);
    }
}
