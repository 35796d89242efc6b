using System.CommandLine;
using System.Globalization;
using VarSharp.Checkpoints;
using VarSharp.Sampling;

namespace VarSharp.Cli.Commands;

/// <summary>
/// Records the sampling settings a model recommends (its config's `sampling` block), so that nobody edits a bundle's
/// config.json and manifest by hand. Fields not given keep their current values; with no option it only prints them.
/// </summary>
internal static class RecommendCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model", "-m") { Description = "Model folder or bundle to update (a bundle is verified first and gets a new manifest)", Required = true };
        var cfg = new Option<double?>("--cfg") { Description = "Recommended guidance scale, ≥ 0" };
        var topK = new Option<int?>("--top-k") { Description = "Recommended top-k, 0 = off, at most the vocabulary size" };
        var topP = new Option<double?>("--top-p") { Description = "Recommended top-p in [0, 1], 0 = off" };
        var reset = new Option<bool>("--reset") { Description = "Remove the block: the model falls back to the reference demo's settings" };
        var classes = new Option<string?>("--classes")
        {
            Description = "Text file with one class name per line, in class-id order: the names sample, serve and the page show and --class accepts (e.g. for an imported model)",
        };
        var command = new Command("recommend", "Show or set the sampling settings a model recommends to sample, eval and serve, and its class names") { model, cfg, topK, topP, reset, classes };
        command.SetAction(parse =>
        {
            var dir = parse.GetRequiredValue(model);
            if (!Directory.Exists(dir)) throw PathErrors.FolderMissing(dir, "Model folder");
            var configPath = ModelFolder.ConfigPath(dir);
            if (!File.Exists(configPath)) throw new VarSharpException($"Model folder {dir} has no config.json.");
            ModelFolder.VerifyIfBundle(dir);
            // Rewriting a bundle gives it a new manifest, which an old signature does not cover: it is dropped, and said so.
            var signer = ModelBundle.IsBundle(dir) ? BundleSignature.SignedBy(dir) : null;
            string Unsigned() => signer is null ? "" : $"; its signature by key {signer} no longer applies and was removed (sign it again with `varsharp sign`)";
            var varConfig = ModelFolder.ReadVarConfig(configPath);
            int vocab = varConfig.VocabSize;
            var current = ModelFolder.ReadSamplingDefaults(configPath, vocab);
            bool edits = parse.GetResult(cfg) is not null || parse.GetResult(topK) is not null || parse.GetResult(topP) is not null;
            var output = parse.InvocationConfiguration.Output;

            // Everything is checked before anything is written, so a bad value never leaves a half-made change.
            bool resetting = parse.GetValue(reset);
            if (resetting && edits) throw new VarSharpException("Give --reset alone, or the settings to recommend, not both.");
            string[]? names = null;
            if (parse.GetValue(classes) is { } namesFile)
            {
                names = ReadNames(namesFile, varConfig.NumClasses);
                ModelFolder.CheckClassNames(names);
            }
            var next = current with
            {
                Cfg = parse.GetValue(cfg) ?? current.Cfg,
                TopK = parse.GetResult(topK) is null ? current.TopK : parse.GetValue(topK),
                TopP = parse.GetValue(topP) ?? current.TopP,
            };
            if (edits)
            {
                // Checked here so that the option, not the config file, is named (NaN would not even be valid JSON).
                if (!double.IsFinite(next.Cfg) || next.Cfg < 0) throw new VarSharpException($"--cfg must be a finite number ≥ 0, found {Fmt(next.Cfg)}.");
                if (next.TopK is < 0 || next.TopK > vocab) throw new VarSharpException($"--top-k must be from 0 (off) to the vocabulary size {vocab}, found {next.TopK}.");
                if (!(next.TopP is >= 0 and <= 1)) throw new VarSharpException($"--top-p must be in [0, 1] (0 is off), found {Fmt(next.TopP)}.");
            }

            // Names and settings in one atomic write: one new manifest, and a failure leaves neither half made.
            if (names is not null || resetting || edits)
                ModelFolder.WriteSettings(dir, varConfig.NumClasses, vocab, names, writeSampling: resetting || edits, resetting ? null : next);
            var lines = new List<string>();
            if (names is not null) lines.Add($"{dir}: class names set ({names.Length}: {string.Join(", ", names.Take(5))}{(names.Length > 5 ? ", …" : "")})");
            if (resetting) lines.Add($"{dir}: no recommended settings; sampling falls back to the reference demo's ({Describe(SamplingDefaults.Reference, vocab)})");
            else if (edits) lines.Add($"{dir} now recommends {Describe(next, vocab)} (was {Describe(current, vocab)})");
            else if (names is null) lines.Add($"{dir} recommends {Describe(current, vocab)}");
            // The signature note once, on the last line of a change.
            if (names is not null || resetting || edits) lines[^1] += Unsigned();
            foreach (var line in lines) output.WriteLine(line);
            return 0;
        });
        return command;
    }

    /// <summary>One name per line; blank lines at the end are ignored, blank lines between names are refused.</summary>
    private static string[] ReadNames(string file, int numClasses)
    {
        if (!File.Exists(file)) throw PathErrors.FileMissing(file, "Class-name file");
        var lines = File.ReadAllLines(file).Select(l => l.Trim()).ToList();
        while (lines.Count > 0 && lines[^1].Length == 0) lines.RemoveAt(lines.Count - 1);
        if (lines.Count != numClasses)
            throw new VarSharpException($"{file} names {lines.Count} classes (one per line) but the model has {numClasses}.");
        return lines.ToArray();
    }

    private static string Describe(SamplingDefaults d, int vocab)
    {
        int k = new SampleOptions { TopK = d.TopK }.ResolveTopK(vocab);
        return string.Create(CultureInfo.InvariantCulture, $"cfg {d.Cfg}, top-k {k}{(d.TopK is null ? " (the reference's share of the codebook)" : "")}, top-p {d.TopP}");
    }

    private static string Fmt(double v) => v.ToString("g", CultureInfo.InvariantCulture);
}
