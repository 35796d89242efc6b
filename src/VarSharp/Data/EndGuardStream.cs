namespace VarSharp.Data;

/// <summary>
/// A read-only view of a stream for the image decoders that fails once they keep reading after its end. StbImageSharp
/// meets a JPEG segment length that points past the end of the file by seeking there and then reading nothing, forever
/// (found by <c>ImageDecodeFuzzTests</c>); a decoder that is making progress never asks for more than a handful of bytes
/// after the end, so a bounded number of empty reads turns that hang into an ordinary "not a readable image" error.
/// </summary>
internal sealed class EndGuardStream(Stream inner) : Stream
{
    /// <summary>Empty reads tolerated before the data counts as ending early.</summary>
    public const int MaxEmptyReads = 1 << 16;

    private int emptyReads;

    public override bool CanRead => true;
    public override bool CanSeek => inner.CanSeek;
    public override bool CanWrite => false;
    public override long Length => inner.Length;

    public override long Position
    {
        get => inner.Position;
        set => inner.Position = value;
    }

    public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count), count);

    public override int Read(Span<byte> buffer) => Count(inner.Read(buffer), buffer.Length);

    private int Count(int read, int asked)
    {
        if (read == 0 && asked > 0 && ++emptyReads > MaxEmptyReads)
            throw new IOException("the image data ends early");
        return read;
    }

    public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);
    public override void Flush() { }
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
