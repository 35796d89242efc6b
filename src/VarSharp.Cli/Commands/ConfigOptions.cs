using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using VarSharp.Config;

namespace VarSharp.Cli.Commands;

/// <summary>
/// Command-line options that each set one field of a config record. Each is declared once with the snake_case field it
/// sets; its help shows the record's default; applying rewrites the given fields in the record's JSON and reads it
/// back through the record's own reader, so a bad value is named by the same validation as in a config file and the
/// option list cannot drift from the record.
/// </summary>
internal sealed class ConfigOptions<T> where T : notnull
{
    private readonly JsonObject defaults;
    private readonly JsonSerializerOptions json;
    private readonly Func<JsonElement, T> read;
    private readonly List<(Option Option, string Field, Func<ParseResult, JsonNode?> Given)> settings = [];

    /// <param name="defaults">The record as its defaults make it (shown in the help).</param>
    /// <param name="read">Reads (and validates) the record from its JSON block.</param>
    public ConfigOptions(T defaults, Func<JsonElement, T> read, JsonSerializerOptions? json = null)
    {
        this.json = json ?? JsonConfig.Options;
        this.defaults = JsonSerializer.SerializeToNode(defaults, this.json)!.AsObject();
        this.read = read;
    }

    public IEnumerable<Option> All => settings.Select(s => s.Option);

    public ConfigOptions<T> Int(string name, string field, string description, string? alias = null, string? defaultNote = null) =>
        Add<int?>(name, field, description, alias, defaultNote, v => v is { } x ? JsonValue.Create(x) : null);

    public ConfigOptions<T> Long(string name, string field, string description, string? defaultNote = null) =>
        Add<long?>(name, field, description, null, defaultNote, v => v is { } x ? JsonValue.Create(x) : null);

    public ConfigOptions<T> ULong(string name, string field, string description) =>
        Add<ulong?>(name, field, description, null, null, v => v is { } x ? JsonValue.Create(x) : null);

    public ConfigOptions<T> Double(string name, string field, string description, string? defaultNote = null) =>
        Add<double?>(name, field, description, null, defaultNote, v => v is { } x ? JsonValue.Create(x) : null);

    public ConfigOptions<T> Text(string name, string field, string description, string? defaultNote = null) =>
        Add<string?>(name, field, description, null, defaultNote, v => v is null ? null : JsonValue.Create(v));

    /// <summary>A file or folder: stored as a full path, so a run resumed from elsewhere still finds it.</summary>
    public ConfigOptions<T> FilePath(string name, string field, string description, string? defaultNote = null) =>
        Add<string?>(name, field, description, null, defaultNote, v => v is null ? null
            : string.IsNullOrWhiteSpace(v) ? throw new VarSharpException($"{name} names no path; give a file or folder.")
            : JsonValue.Create(Path.GetFullPath(v)));

    /// <summary>Comma-separated integers (1,2,2).</summary>
    public ConfigOptions<T> IntList(string name, string field, string description) =>
        Add<string?>(name, field, description, null, null, v => v is null ? null : new JsonArray(OptionText.Ints(v, name).Select(i => (JsonNode?)JsonValue.Create(i)).ToArray()));

    /// <summary>A switch that sets a boolean field to <paramref name="whenGiven"/> (--hflip: true; --no-resize: false).</summary>
    public ConfigOptions<T> Flag(string name, string field, string description, bool whenGiven = true)
    {
        var option = new Option<bool>(name) { Description = description };
        // A bool option has a result even when absent (implicit false): only one typed on the command line counts, or a
        // `--no-x` switch would override a checkpoint's stored false on every resume.
        settings.Add((option, field, p => p.GetResult(option) is not { Implicit: false } ? null : JsonValue.Create(p.GetValue(option) == whenGiven)));
        return this;
    }

    /// <summary>Whether the option of <paramref name="field"/> was given on the command line.</summary>
    public bool Given(ParseResult parse, string field) => settings.Any(s => s.Field == field && s.Given(parse) is not null);

    /// <summary>The record with every given option applied, validated by the record's reader.</summary>
    public T Apply(ParseResult parse, T config)
    {
        var node = JsonSerializer.SerializeToNode(config, json)!.AsObject();
        foreach (var (_, field, given) in settings)
            if (given(parse) is { } value) node[field] = value;
        return read(JsonSerializer.SerializeToElement(node, json));
    }

    private ConfigOptions<T> Add<TValue>(string name, string field, string description, string? alias, string? defaultNote, Func<TValue?, JsonNode?> toJson)
    {
        if (!defaults.ContainsKey(field)) throw new InvalidOperationException($"{typeof(T).Name} has no field '{field}' for {name}.");
        var option = alias is null ? new Option<TValue>(name) : new Option<TValue>(name, alias);
        option.Description = $"{description} ({defaultNote ?? DefaultText(defaults[field])})";
        settings.Add((option, field, p => toJson(p.GetValue(option))));
        return this;
    }

    private static string DefaultText(JsonNode? value) => value switch
    {
        null => "none",
        JsonArray a => string.Join(",", a.Select(x => x?.ToJsonString())),
        JsonValue v when v.TryGetValue<string>(out var s) => s.Length == 0 ? "none" : s,
        JsonValue v when v.TryGetValue<double>(out var d) => d.ToString(CultureInfo.InvariantCulture),
        _ => value.ToJsonString(),
    };
}

/// <summary>The training settings both training verbs take, declared once.</summary>
internal static class CommonTrainSettings
{
    /// <summary>Adds the data, schedule, optimizer, logging and checkpoint options every training config has.</summary>
    public static ConfigOptions<T> AddCommon<T>(this ConfigOptions<T> o, string seedUse, string? warmupNote = null, string prefetchUse = "Batches prepared ahead by the worker thread",
        string hflipUse = "Random horizontal flips of training images", string evalUse = "Held-out evaluation every N steps") where T : notnull => o
        .FilePath("--data", "data", "Fashion-MNIST idx folder or image folder")
        .Int("--steps", "steps", "Optimizer steps")
        .Int("--batch-size", "batch_size", "Images per step", alias: "-b")
        .Int("--grad-accum", "grad_accum", "Run each batch in N slices whose gradients add up: the same step, with only one slice's activations in memory at a time")
        .Int("--warmup-steps", "warmup_steps", "Linear warmup steps", defaultNote: warmupNote)
        .Double("--min-lr-ratio", "min_lr_ratio", "Final lr / peak lr")
        .Double("--weight-decay", "weight_decay", "AdamW decoupled weight decay")
        .Double("--grad-clip", "grad_clip", "Global gradient-norm clip, 0 = off")
        .ULong("--seed", "seed", seedUse)
        .Int("--log-every", "log_every", "Log line every N steps")
        .Int("--eval-every", "eval_every", evalUse)
        .Int("--eval-images", "eval_images", "Held-out images evaluated, 0 = none")
        .Int("--checkpoint-every", "checkpoint_every", "Checkpoint every N steps")
        .Int("--keep-checkpoints", "keep_checkpoints", "Checkpoints kept")
        .Int("--prefetch", "prefetch", prefetchUse)
        .Flag("--no-resize", "resize", "Image folders: require size×size images instead of resizing + cropping", whenGiven: false)
        .Flag("--hflip", "hflip", hflipUse)
        .Flag("--strict", "strict", "Stop at the first unreadable image instead of skipping and counting it");
}

/// <summary>The options of a training verb that are about the run rather than its config: where it goes and when it stops.</summary>
internal sealed class TrainRunOptions
{
    public readonly Option<string?> Out = new("--out", "-o") { Description = "New run folder (must not exist or be empty)" };
    public readonly Option<string?> Resume = new("--resume") { Description = "Continue a run folder (its latest checkpoint) or a checkpoint folder" };
    public readonly Option<long?> StopAfter = new("--stop-after") { Description = "Stop (and checkpoint) once this step is reached, to resume later" };
    public readonly Option<int?> Threads = new("--threads") { Description = "torch threads (same seed + same threads → identical weights)" };

    public readonly Option<string?> Device = DeviceOption.Create();

    public IEnumerable<Option> All => [Out, Resume, StopAfter, Threads, Device];

    /// <summary>--stop-after, checked: a step to stop at is at least 1.</summary>
    public long? StopAt(ParseResult parse) => parse.GetValue(StopAfter) switch
    {
        < 1 and var n => throw new VarSharpException($"--stop-after must be a step of at least 1, found {n}."),
        var n => n,
    };
}

/// <summary>Parsing of option values that System.CommandLine leaves as text.</summary>
internal static class OptionText
{
    /// <summary>Comma-separated integers (1,2,2), or a one-sentence error naming the option.</summary>
    public static int[] Ints(string text, string option, string example = "1,2,3")
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var result = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out result[i]))
                throw new VarSharpException($"{option} takes comma-separated integers like {example} but got '{text}'.");
        return result;
    }
}
