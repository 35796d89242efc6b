using System.CommandLine;
using System.Globalization;
using static TorchSharp.torch;

namespace VarSharp.Cli.Commands;

/// <summary>
/// The --device option of every verb that computes: cpu (the default) or cuda / cuda:N. The library takes the device
/// everywhere; this build of TorchSharp is CPU-only, so asking for CUDA here is refused in one sentence rather than
/// failing deep inside libtorch.
/// </summary>
internal static class DeviceOption
{
    public static Option<string?> Create() => new("--device")
    {
        Description = "Where to compute: cpu (default), cuda or cuda:N (needs a CUDA build of TorchSharp and a GPU)",
    };

    /// <summary>The device named by the option's text (null: the CPU).</summary>
    public static Device Resolve(string? text)
    {
        var name = text?.Trim().ToLowerInvariant();
        if (name is null or "cpu") return CPU;
        int index = 0;
        bool cuda = name == "cuda" || (name.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(name["cuda:".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out index));
        if (!cuda) throw new VarSharpException($"--device must be cpu, cuda or cuda:N but is '{text}'.");
        if (!TorchSharp.torch.cuda.is_available())
            throw new VarSharpException($"--device {name} needs a CUDA build of TorchSharp and a GPU, but this build sees no CUDA device; use --device cpu.");
        int count = TorchSharp.torch.cuda.device_count();
        if (index >= count) throw new VarSharpException($"--device {name} names GPU {index} but only {count} CUDA device(s) are visible.");
        return new Device(TorchSharp.DeviceType.CUDA, index);
    }

    /// <summary>The --dtype option: the transformer's floating-point type (the tokenizer stays float32).</summary>
    public static Option<string?> CreateDtype() => new("--dtype")
    {
        Description = "The transformer's number type: f32 (default, the reference's), bf16 or f16 (half the memory; speed depends on the hardware's support)",
    };

    public static ScalarType DtypeOf(ParseResult parse, Option<string?> option) => ParseDType(parse.GetValue(option), "--dtype");

    /// <summary>f32 / bf16 / f16 (and their common spellings; null is f32) → the scalar type, or a one-sentence error naming <paramref name="optionName"/>.</summary>
    public static ScalarType ParseDType(string? text, string optionName) => text?.Trim().ToLowerInvariant() switch
    {
        null or "f32" or "float32" or "fp32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        "f16" or "fp16" or "float16" or "half" => ScalarType.Float16,
        var other => throw new VarSharpException($"{optionName} must be f32, bf16 or f16 but is '{other}'."),
    };

    /// <summary>The short name of a number type as the options spell it (f32, bf16, f16).</summary>
    public static string Name(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => "bf16",
        ScalarType.Float16 => "f16",
        ScalarType.Float32 => "f32",
        var other => other.ToString(),
    };

    /// <summary>Resolves the option's value from a parse result.</summary>
    public static Device Of(ParseResult parse, Option<string?> option) => Resolve(parse.GetValue(option));
}
