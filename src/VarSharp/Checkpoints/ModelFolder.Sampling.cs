using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using VarSharp.Config;
using VarSharp.Sampling;

namespace VarSharp.Checkpoints;

public static partial class ModelFolder
{
    /// <summary>
    /// The model's recommended sampling settings from the optional `sampling` block of <paramref name="configPath"/>;
    /// <see cref="SamplingDefaults.Reference"/> where the block or a field is absent. A field of the wrong type or out of
    /// range is a one-sentence <see cref="VarSharpException"/>.
    /// </summary>
    public static SamplingDefaults ReadSamplingDefaults(string configPath, int vocabSize)
    {
        using var doc = JsonConfig.ParseFile(configPath);
        return ReadSamplingDefaults(doc.RootElement, configPath, vocabSize);
    }

    /// <summary><see cref="ReadSamplingDefaults(string, int)"/> on a parsed config (<paramref name="configPath"/> names it in errors).</summary>
    public static SamplingDefaults ReadSamplingDefaults(JsonElement root, string configPath, int vocabSize)
    {
        var d = SamplingDefaults.Reference;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("sampling", out var block)) return d;
        if (block.ValueKind != JsonValueKind.Object)
            throw new VarSharpException($"Config file {configPath}: 'sampling' must be an object like {{\"cfg\": 1.5}}.");
        foreach (var field in block.EnumerateObject())
        {
            switch (field.Name)
            {
                case "cfg":
                    double cfg = Number(field, configPath);
                    if (!(cfg >= 0) || double.IsInfinity(cfg))
                        throw new VarSharpException($"Config file {configPath}: sampling.cfg must be a finite number ≥ 0, found {cfg}.");
                    d = d with { Cfg = cfg };
                    break;
                case "top_k":
                    if (field.Value.ValueKind != JsonValueKind.Number || !field.Value.TryGetInt32(out int k) || k < 0 || k > vocabSize)
                        throw new VarSharpException($"Config file {configPath}: sampling.top_k must be an integer from 0 (off) to the vocabulary size {vocabSize}.");
                    d = d with { TopK = k };
                    break;
                case "top_p":
                    double p = Number(field, configPath);
                    if (!(p >= 0 && p <= 1))
                        throw new VarSharpException($"Config file {configPath}: sampling.top_p must be in [0, 1], found {p}.");
                    d = d with { TopP = p };
                    break;
                default:
                    throw new VarSharpException($"Config file {configPath}: sampling.{field.Name} is not a sampling setting (cfg, top_k, top_p).");
            }
        }
        return d;
    }

    /// <summary>
    /// Writes <paramref name="settings"/> as the `sampling` block of the folder's config.json (null removes the block),
    /// leaving every other field as it was. A bundle gets a new manifest in the same atomic step
    /// (<see cref="ModelBundle.ReplaceConfig"/>); a plain folder's config.json is replaced by rename. The settings are
    /// checked exactly as <see cref="ReadSamplingDefaults"/> checks them before anything is written.
    /// </summary>
    public static void WriteSamplingDefaults(string dir, SamplingDefaults? settings, int vocabSize) =>
        EditConfig(dir, root => SetSampling(root, settings), (written, configPath) => ReadSamplingDefaults(written, configPath, vocabSize));

    /// <summary>
    /// <see cref="WriteClassNames"/> and <see cref="WriteSamplingDefaults"/> (when <paramref name="writeSampling"/>) in
    /// one atomic step: one verification, one new config and manifest, so a failure leaves neither change half made.
    /// </summary>
    public static void WriteSettings(string dir, int numClasses, int vocabSize, IReadOnlyList<string>? classNames, bool writeSampling, SamplingDefaults? sampling)
    {
        if (classNames is not null) CheckClassNames(classNames);
        EditConfig(dir, root =>
        {
            if (classNames is not null) SetClassNames(root, classNames);
            if (writeSampling) SetSampling(root, sampling);
        }, (written, configPath) =>
        {
            ReadClassNames(written, configPath, numClasses);
            ReadSamplingDefaults(written, configPath, vocabSize);
        });
    }

    private static void SetSampling(JsonObject root, SamplingDefaults? settings)
    {
        if (settings is null)
        {
            root.Remove("sampling");
            return;
        }
        var block = new JsonObject { ["cfg"] = settings.Cfg };
        if (settings.TopK is { } k) block["top_k"] = k;
        block["top_p"] = settings.TopP;
        root["sampling"] = block;
    }

    private static void SetClassNames(JsonObject root, IReadOnlyList<string>? names)
    {
        root.Remove("classes");
        if (root["var"] is JsonObject block) block.Remove("classes");
        if (names is not null) root["classes"] = new JsonArray(names.Select(n => (JsonNode?)n.Trim()).ToArray());
    }

    /// <summary>
    /// Writes the model's class names as the top-level `classes` array of config.json (null removes it, and the names
    /// fall back as <see cref="ReadClassNames(string, int)"/> says), in the same atomic step as the bundle's new manifest.
    /// Names must be non-empty, distinct ignoring case (they are looked up that way) and one per class.
    /// </summary>
    public static void WriteClassNames(string dir, IReadOnlyList<string>? names, int numClasses)
    {
        if (names is not null) CheckClassNames(names);
        EditConfig(dir, root => SetClassNames(root, names), (written, configPath) => ReadClassNames(written, configPath, numClasses));
    }

    /// <summary>Refuses empty class names and names given twice (names are matched ignoring case).</summary>
    public static void CheckClassNames(IReadOnlyList<string> names)
    {
        if (names.Any(string.IsNullOrWhiteSpace)) throw new VarSharpException("Class names must not be empty.");
        var twice = names.GroupBy(n => n.Trim(), StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null) throw new VarSharpException($"The class name '{twice.Key}' appears more than once (names are matched ignoring case).");
    }

    /// <summary>
    /// Rewrites the folder's config.json through <paramref name="edit"/>, leaving every other field as it was; the new text
    /// is read back with <paramref name="check"/> (the reader every verb uses) before anything is written. A bundle is
    /// verified first and gets a new manifest in the same atomic step (<see cref="ModelBundle.ReplaceConfig"/>); a plain
    /// folder's config.json is replaced by rename.
    /// </summary>
    private static void EditConfig(string dir, Action<JsonObject> edit, Action<JsonElement, string> check)
    {
        // A folder reached through a symbolic link is edited where it lives: replacing the link with a new folder would
        // leave the real one unchanged.
        dir = Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir));
        if (!Directory.Exists(dir)) throw PathErrors.FolderMissing(dir, "Model folder");
        if (new DirectoryInfo(dir).ResolveLinkTarget(returnFinalTarget: true) is { } real) dir = real.FullName;
        var configPath = ConfigPath(dir);
        if (!File.Exists(configPath)) throw new VarSharpException($"Model folder {dir} has no config.json.");
        // The bytes edited are the bytes verified (a bundle's config is hashed as it is read), not a second read.
        JsonObject root;
        using (var doc = ModelFiles.ReadConfig(dir))
            root = doc.RootElement.ValueKind == JsonValueKind.Object ? JsonObject.Create(doc.RootElement.Clone())!
                : throw new VarSharpException($"Config file {configPath} is not a JSON object.");
        edit(root);
        var json = root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";

        // Check the very text that will be written, with the reader every verb uses, before touching the folder.
        using (var doc = JsonDocument.Parse(json)) check(doc.RootElement, configPath);
        if (ModelBundle.IsBundle(dir))
        {
            ModelBundle.ReplaceConfig(dir, json);
            return;
        }
        var temp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(configPath))!, $".config.json.tmp-{Guid.NewGuid():N}");
        using var tracked = TemporaryPaths.Track(temp);
        try
        {
            using (var s = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                s.Write(Encoding.UTF8.GetBytes(json));
                s.Flush(flushToDisk: true);
            }
            tracked.Publish(() => File.Move(temp, configPath, overwrite: true));
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    private static double Number(JsonProperty field, string configPath) =>
        field.Value.ValueKind == JsonValueKind.Number
            ? field.Value.GetDouble()
            : throw new VarSharpException($"Config file {configPath}: sampling.{field.Name} must be a number.");
}
