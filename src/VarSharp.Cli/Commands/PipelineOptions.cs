using System.CommandLine;
using VarSharp.Sampling;
using VarSharp.Web;

namespace VarSharp.Cli.Commands;

/// <summary>The options that name a full model (tokenizer + transformer): a model folder, or a config file plus a weights file.</summary>
internal sealed class PipelineOptions
{
    public Option<string?> Model { get; } = new("--model", "-m")
    {
        Description = $"Model folder: config.json (vqvae + var blocks) + model.safetensors (or weights.safetensors). Default: {ServeOptions.DefaultModelPath} when it exists",
    };
    public Option<string?> Config { get; } = new("--config") { Description = "Config file with 'vqvae' and 'var' blocks (with --weights, instead of --model)" };
    public Option<string?> Weights { get; } = new("--weights") { Description = "safetensors file with 'vae.*' and 'var.*' keys (with --config, instead of --model)" };

    public Option<string[]> Trust { get; } = TrustOption.Create();
    public Option<string?> Device { get; } = DeviceOption.Create();
    public Option<string?> Dtype { get; } = DeviceOption.CreateDtype();

    public void AddTo(Command command)
    {
        command.Options.Add(Trust);
        command.Options.Add(Model);
        command.Options.Add(Config);
        command.Options.Add(Weights);
        command.Options.Add(Device);
        command.Options.Add(Dtype);
    }

    /// <summary>Loads the named model; <paramref name="dtype"/> overrides --dtype (bench's half-precision comparison).</summary>
    public VarPipeline Load(ParseResult parse, TorchSharp.torch.ScalarType? dtype = null)
    {
        var model = parse.GetValue(Model);
        var config = parse.GetValue(Config);
        var weights = parse.GetValue(Weights);
        if (model is not null && (config is not null || weights is not null))
            throw new VarSharpException("Give either --model or --config with --weights, not both.");
        // Nothing named at all: the bundled model, as `serve` does, so that a first `varsharp sample --class bag -o out` works.
        if (model is null && config is null && weights is null)
            model = ServeOptions.FindDefaultModel()
                ?? throw new VarSharpException($"Name a model with --model DIR ({ServeOptions.DefaultModelPath} was not found), or with both --config FILE and --weights FILE.");
        var trust = TrustOption.ForModel(parse.GetValue(Trust), model);
        var device = DeviceOption.Of(parse, Device);
        var type = dtype ?? DeviceOption.DtypeOf(parse, Dtype);
        if (model is not null) return VarPipeline.Load(model, device, trust, type);
        if (config is null || weights is null)
            throw new VarSharpException("Name a model with --model DIR, or with both --config FILE and --weights FILE.");
        return VarPipeline.Load(config, weights, device, type);
    }
}
