using System.Security.Cryptography;
using static TorchSharp.torch;

namespace VarSharp.Checkpoints;

/// <summary>SHA-256 over tensors' raw bytes, for caches that record what they hold and check it on every load.</summary>
public static class TensorDigest
{
    /// <summary>Lowercase hex SHA-256 of the tensors' bytes (contiguous, on the CPU), one after another.</summary>
    public static string Of(params Tensor[] tensors)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var t in tensors)
        {
            using var c = t.detach().contiguous().cpu();
            hash.AppendData(c.bytes);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}
