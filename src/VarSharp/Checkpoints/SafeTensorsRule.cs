namespace VarSharp.Checkpoints;

/// <summary>Which safetensors validation rule a file broke, so callers and tests can tell failures apart without parsing messages.</summary>
public enum SafeTensorsRule
{
    HeaderTooShort,
    HeaderTooLarge,
    HeaderNotJson,
    HeaderNotObject,
    BadEntry,
    UnknownDType,
    BadShape,
    OffsetsOutOfBounds,
    SizeMismatch,
    Overlap,
    Gap,
    DuplicateName,
    BadMetadata,
    TrailingBytes,
    /// <summary>A BOOL tensor holds a byte other than 0 or 1.</summary>
    BadBool,
}
