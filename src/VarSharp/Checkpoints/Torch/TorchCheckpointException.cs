namespace VarSharp.Checkpoints.Torch;

/// <summary>Why a PyTorch checkpoint was refused, so callers and tests can tell failures apart without parsing messages.</summary>
public enum TorchCheckpointReason
{
    /// <summary>Neither a zip checkpoint nor a legacy pickle stream (or an empty/too short file).</summary>
    NotACheckpoint,
    /// <summary>The zip container is damaged: no end record, bad signatures, sizes that disagree, overlapping entries, truncation.</summary>
    ZipCorrupt,
    /// <summary>An entry name is absolute, climbs out with "..", or holds characters no torch checkpoint uses.</summary>
    UnsafeEntryName,
    /// <summary>Two zip entries share one name.</summary>
    DuplicateEntry,
    /// <summary>An entry is compressed (torch always stores records uncompressed), which is also how zip bombs work.</summary>
    CompressedEntry,
    /// <summary>An entry is encrypted.</summary>
    EncryptedEntry,
    /// <summary>A record's bytes do not match the CRC-32 the zip directory declares.</summary>
    CrcMismatch,
    /// <summary>A record the checkpoint needs (data.pkl, data/&lt;key&gt;) is absent or ambiguous.</summary>
    MissingRecord,
    /// <summary>A legacy (non-zip) stream whose header, storage list or layout is not the one torch.save writes.</summary>
    LegacyFormat,
    /// <summary>The pickle uses an opcode outside the subset torch checkpoints need.</summary>
    ForbiddenOpcode,
    /// <summary>The pickle names a global that is not on the allow-list.</summary>
    ForbiddenGlobal,
    /// <summary>The pickle calls (REDUCE) or builds (BUILD) something in a way a state dict never does.</summary>
    ForbiddenCall,
    /// <summary>The pickle is structurally broken: truncated, stack underflow, unknown memo slot, wrong argument types.</summary>
    MalformedPickle,
    /// <summary>A persistent id is not ('storage', StorageType, key, location, numel).</summary>
    BadPersistentId,
    /// <summary>The unpickled object is not a flat mapping from names to tensors.</summary>
    NotAStateDict,
    /// <summary>A dictionary in the pickle sets one key twice.</summary>
    DuplicateKey,
    /// <summary>A storage record's length is not numel × element size.</summary>
    RecordSizeMismatch,
    /// <summary>A tensor has negative sizes, strides or offset, or sizes and strides of different lengths, or too many dimensions.</summary>
    BadTensorGeometry,
    /// <summary>A tensor reads outside its storage.</summary>
    TensorOutOfBounds,
    /// <summary>An element count, byte size or extent overflows 64-bit arithmetic.</summary>
    SizeOverflow,
    /// <summary>The checkpoint would need more memory than its size justifies (huge pickle, tensors larger than their storage).</summary>
    ResourceLimit,
    /// <summary>The checkpoint stores big-endian data, or declares a byte order this reader does not handle.</summary>
    UnsupportedByteOrder,
    /// <summary>Tensor bytes that are not a valid value of their dtype (a bool other than 0 or 1).</summary>
    BadTensorData,
}

/// <summary>A PyTorch checkpoint was refused; the message is one sentence naming the file and the offending item.</summary>
public sealed class TorchCheckpointException : VarSharpException
{
    public TorchCheckpointException(TorchCheckpointReason reason, string message) : base(OneLine.Of(message)) => Reason = reason;

    public TorchCheckpointException(TorchCheckpointReason reason, string message, Exception inner) : base(OneLine.Of(message), inner) => Reason = reason;

    public TorchCheckpointReason Reason { get; }
}
