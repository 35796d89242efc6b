using System.CommandLine;
using VarSharp.Checkpoints;
using VarSharp.Tokenizer;

namespace VarSharp.Cli.Commands;

/// <summary>The options that name a tokenizer: a model folder, or a config file plus a weights file.</summary>
internal sealed class TokenizerOptions
{
    /// <summary>The files the command reads: the image and, when given, the config and weights files.</summary>
    public string?[] Inputs(ParseResult parse, string image) => [image, parse.GetValue(Config), parse.GetValue(Weights)];

    public Option<string?> Model { get; } = new("--model", "-m") { Description = "Model folder: config.json + model.safetensors (or weights.safetensors)" };
    public Option<string?> Config { get; } = new("--config") { Description = "Config file with a 'vqvae' block (with --weights, instead of --model)" };
    public Option<string?> Weights { get; } = new("--weights") { Description = "safetensors file with 'vae.*' keys (with --config, instead of --model)" };

    public Option<string[]> Trust { get; } = TrustOption.Create();
    public Option<string?> Device { get; } = DeviceOption.Create();

    public void AddTo(Command command)
    {
        command.Options.Add(Trust);
        command.Options.Add(Model);
        command.Options.Add(Config);
        command.Options.Add(Weights);
        command.Options.Add(Device);
    }

    public VqVae Load(ParseResult parse)
    {
        var model = parse.GetValue(Model);
        var config = parse.GetValue(Config);
        var weights = parse.GetValue(Weights);
        if (model is not null && (config is not null || weights is not null))
            throw new VarSharpException("Give either --model or --config with --weights, not both.");
        var trust = TrustOption.ForModel(parse.GetValue(Trust), model);
        var device = DeviceOption.Of(parse, Device);
        if (model is not null) return ModelFolder.LoadTokenizer(model, device, trust);
        if (config is null || weights is null)
            throw new VarSharpException("Name a tokenizer with --model DIR, or with both --config FILE and --weights FILE.");
        return ModelFolder.LoadTokenizer(config, weights, device);
    }
}
