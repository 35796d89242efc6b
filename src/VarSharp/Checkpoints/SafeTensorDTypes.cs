using TorchSharp;

namespace VarSharp.Checkpoints;

/// <summary>The safetensors dtype names this library can map onto TorchSharp scalar types.</summary>
internal static class SafeTensorDTypes
{
    private static readonly (string Name, torch.ScalarType Type, int Size)[] Table =
    [
        ("F64", torch.ScalarType.Float64, 8),
        ("F32", torch.ScalarType.Float32, 4),
        ("F16", torch.ScalarType.Float16, 2),
        ("BF16", torch.ScalarType.BFloat16, 2),
        ("I64", torch.ScalarType.Int64, 8),
        ("I32", torch.ScalarType.Int32, 4),
        ("I16", torch.ScalarType.Int16, 2),
        ("I8", torch.ScalarType.Int8, 1),
        ("U8", torch.ScalarType.Byte, 1),
        ("BOOL", torch.ScalarType.Bool, 1),
        ("C64", torch.ScalarType.ComplexFloat32, 8),
    ];

    public static string KnownList { get; } = string.Join(", ", Table.Select(t => t.Name));

    public static bool TryGet(string name, out torch.ScalarType type, out int size)
    {
        foreach (var row in Table)
        {
            if (row.Name == name)
            {
                (type, size) = (row.Type, row.Size);
                return true;
            }
        }
        (type, size) = (default, 0);
        return false;
    }

    public static bool TryGetName(torch.ScalarType type, out string name)
    {
        foreach (var row in Table)
        {
            if (row.Type == type)
            {
                name = row.Name;
                return true;
            }
        }
        name = "";
        return false;
    }

    public static torch.ScalarType ScalarType(string name) =>
        TryGet(name, out var type, out _) ? type : throw new InvalidOperationException($"dtype {name} was not validated");
}
