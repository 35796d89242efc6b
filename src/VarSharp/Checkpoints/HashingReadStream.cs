using System.Security.Cryptography;

namespace VarSharp.Checkpoints;

/// <summary>
/// A forward-only read view of a stream that feeds every byte it hands out into a SHA-256, so a digest covers exactly
/// the bytes a reader used — no second read of a file that could change in between. Seeking forward reads through
/// (and hashes) the bytes skipped; seeking back is refused.
/// </summary>
internal sealed class HashingReadStream(Stream inner) : Stream
{
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly long _length = inner.Length;
    private long _position;
    private byte[]? _skip;

    /// <summary>Lowercase hex SHA-256 of everything read so far.</summary>
    public string Sha256() => Convert.ToHexStringLower(_hash.GetCurrentHash());

    public override bool CanRead => true;
    public override bool CanSeek => true;
    public override bool CanWrite => false;
    public override long Length => _length;

    public override long Position
    {
        get => _position;
        set => Seek(value, SeekOrigin.Begin);
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int n = inner.Read(buffer);
        _hash.AppendData(buffer[..n]);
        _position += n;
        return n;
    }

    public override long Seek(long offset, SeekOrigin origin)
    {
        long target = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            _ => _length + offset,
        };
        if (target < _position) throw new InvalidOperationException("a hashing read cannot seek backwards.");
        while (_position < target)
        {
            _skip ??= new byte[1 << 20];
            int n = Read(_skip.AsSpan(0, (int)Math.Min(_skip.Length, target - _position)));
            if (n == 0) throw new EndOfStreamException($"the stream ended at byte {_position}, before byte {target}.");
        }
        return _position;
    }

    public override void Flush() { }
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) _hash.Dispose();
        base.Dispose(disposing);
    }
}
