using System.Security.Cryptography;

namespace VarSharp.Checkpoints;

public static class FileDigest
{
    /// <summary>Lowercase hex SHA-256 of a file, streamed so checkpoint-sized files never sit in memory.</summary>
    public static string Sha256(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}
