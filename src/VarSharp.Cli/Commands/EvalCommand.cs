using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using VarSharp.Checkpoints;
using VarSharp.Config;
using VarSharp.Data;
using VarSharp.Evaluation;
using VarSharp.Sampling;
using static TorchSharp.torch;

namespace VarSharp.Cli.Commands;

/// <summary>
/// `eval`: scores a tokenizer (reconstruction MSE/PSNR and codebook usage on the test split) or a full model
/// (class consistency, Fréchet distance on classifier features, precision/recall and speed per guidance scale).
/// See docs/evaluation.md for what each number means.
/// </summary>
internal static class EvalCommand
{
    public const string DefaultClassifier = BundledModels.Classifier;
    public const string FdName = "FD (FashionClassifier features)";

    private sealed class Options
    {
        public readonly Option<string?> Tokenizer = new("--tokenizer") { Description = "Evaluate this tokenizer folder (config.json with a 'vqvae' block + weights)" };
        public readonly Option<string?> Model = new("--model", "-m") { Description = "Evaluate generation by this model folder (tokenizer + transformer)" };
        public readonly Option<string> Data = new("--data") { Description = $"Fashion-MNIST idx folder or labelled image folder; its test split is used (default {FashionMnist.DefaultDirectory})", DefaultValueFactory = _ => FashionMnist.DefaultDirectory };
        public readonly Option<int> Images = new("--images") { Description = "--tokenizer: evaluate the first N test images (0 = all)", DefaultValueFactory = _ => 0 };
        public readonly Option<string> Classifier = new("--classifier") { Description = $"Classifier bundle that judges the images (--model), or scores the reconstructions (--tokenizer: rFD); default {DefaultClassifier}", DefaultValueFactory = _ => BundledModels.Find(DefaultClassifier) ?? DefaultClassifier };
        public readonly Option<string> Cfg = new("--cfg") { Description = "--model: comma-separated guidance scales, each evaluated on the same seeds (1,2,4)", DefaultValueFactory = _ => "1,2,4" };
        public readonly Option<int> PerClass = new("--per-class") { Description = "--model: images generated per class and per cfg (100)", DefaultValueFactory = _ => 100 };
        public readonly Option<int?> TopK = new("--top-k") { Description = "--model: top-k, 0 = off (default: the model's recommended value, else the demo's share of the codebook, round(900·V/4096))" };
        public readonly Option<double?> TopP = new("--top-p") { Description = "--model: top-p, 0 = off (default: the model's recommended value, else 0.95)" };
        public readonly Option<long> Seed = new("--seed", "-s") { Description = "--model: image i of every cfg uses the generator seeded seed+i (0)", DefaultValueFactory = _ => 0 };
        public readonly Option<int?> BatchSize = new("--batch-size", "-b") { Description = "Images per batch (tokenizer 64, sampling 16); does not change the results" };
        public readonly Option<string?> Json = new("--json") { Description = "Also write the results as JSON to this file" };
        public readonly Option<bool> Force = OutputFile.ForceOption();
        public readonly Option<string?> CacheDir = new("--cache-dir") { Description = "--model: where test-set classifier features are cached (default $VARSHARP_CACHE, else $XDG_CACHE_HOME/varsharp, else ~/.cache/varsharp)" };
        public readonly Option<bool> NoCache = new("--no-cache") { Description = "--model: compute the test-set features afresh and store nothing" };
        public readonly Option<int?> Threads = LongRun.ThreadsOption();
        public readonly Option<string?> Device = DeviceOption.Create();
        public readonly Option<string?> Dtype = DeviceOption.CreateDtype();
        public readonly Option<string[]> Trust = TrustOption.Create("Only load bundles (tokenizer, model and classifier) signed by this public key (repeatable)");

        public IEnumerable<Option> All => GetType().GetFields().Select(f => f.GetValue(this)).OfType<Option>();
    }

    public static Command Create()
    {
        var o = new Options();
        var command = new Command("eval",
            "Evaluate a tokenizer (--tokenizer: reconstruction MSE, PSNR, codebook usage) or generation (--model: class consistency, FD on classifier features, precision/recall, speed); see docs/evaluation.md");
        foreach (var option in o.All) command.Options.Add(option);
        command.SetAction(parse => Run(parse, o));
        return command;
    }

    private static int Run(ParseResult parse, Options o)
    {
        LongRun.SetThreads(parse.GetValue(o.Threads));
        if (parse.GetValue(o.BatchSize) is < 1 and var b) throw new VarSharpException($"--batch-size must be at least 1 but is {b}.");
        var tokenizer = parse.GetValue(o.Tokenizer);
        var model = parse.GetValue(o.Model);
        if ((tokenizer is null) == (model is null))
            throw new VarSharpException("Name what to evaluate with either --tokenizer DIR or --model DIR (not both).");
        // An option of the other mode would be silently ignored, and the figures taken for what it asked.
        Option[] modelOnly = [o.Cfg, o.PerClass, o.TopK, o.TopP, o.Seed, o.CacheDir, o.NoCache, o.Dtype];
        var stray = tokenizer is not null ? modelOnly.FirstOrDefault(opt => Typed(parse, opt)) : Typed(parse, o.Images) ? o.Images : null;
        if (stray is not null)
            throw new VarSharpException($"{stray.Name} applies to eval {(tokenizer is not null ? "--model" : "--tokenizer")}, not to what is evaluated here; leave it out.");
        // Checked now, not after a run of minutes or hours.
        if (parse.GetValue(o.Json) is { } json) OutputFile.Check(json, parse.GetValue(o.Force));
        return tokenizer is not null ? EvalTokenizer(parse, o, tokenizer) : EvalModel(parse, o, model!);
    }

    // Typed on the command line, not filled in by a default.
    private static bool Typed(ParseResult parse, Option option) => parse.GetResult(option) is { Implicit: false };

    private static int EvalTokenizer(ParseResult parse, Options o, string dir)
    {
        var writer = parse.InvocationConfiguration.Output;
        int images = parse.GetValue(o.Images);
        if (images < 0) throw new VarSharpException($"--images must be 0 (all) or positive but is {images}.");
        RequireFolder(dir, "Tokenizer");
        using var vae = ModelFolder.LoadTokenizer(dir, DeviceOption.Of(parse, o.Device), TrustOption.Of(parse.GetValue(o.Trust)));
        var cfg = vae.Config;
        var data = Datasets.Open(parse.GetValue(o.Data)!, DataSplit.Test, cfg.InChannels, cfg.ImageSize);
        var indices = data.HeldOut(images == 0 ? data.Count : images);
        int n = indices.Count;
        var (x, labels) = DatasetTensors.Load(data, [.. indices]);
        var (classifier, classifierNote) = TokenizerClassifier(parse, o, vae.Config);
        if (classifier is not null && n < 2) classifierNote = "the rFD needs at least 2 images, so it is left out";
        // Accuracy only means something when the data's classes are the classifier's.
        var knownLabels = classifier?.Info?.ClassNames is { Count: > 0 } names && names.SequenceEqual(data.ClassNames) ? labels : null;
        TokenizerEvalReport report;
        using (classifier)
        using (labels)
        using (x)
        {
            int batch = parse.GetValue(o.BatchSize) ?? 64;
            report = CliConsole.IsTerminal(writer)
                ? CliConsole.For(writer).Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                    .Start(ctx =>
                    {
                        var task = ctx.AddTask("reconstructing", maxValue: n);
                        return TokenizerEvaluation.Evaluate(vae, x, batch, new Reporter<int>(done => task.Value = done), classifier, knownLabels);
                    })
                : TokenizerEvaluation.Evaluate(vae, x, batch, classifier: classifier, labels_N: knownLabels);
        }

        var console = CliConsole.For(writer);
        writer.WriteLine($"tokenizer {dir}: {report.Images} test images of {data.Description}");
        writer.WriteLine(Invariant($"reconstruction MSE {report.Mse:0.000000} (per pixel value, [-1, 1] scale; {report.Mse / 4:0.000000} on [0, 1])"));
        writer.WriteLine(Invariant($"PSNR {report.Psnr:0.00} dB (mean over images, [0, 1] scale; {report.PsnrOfMeanMse:0.00} dB from the pooled MSE)"));
        writer.WriteLine(Invariant($"codebook usage per scale, V = {report.VocabSize} ({report.UsedPercentAnyScale:0.0}% of codes used at some scale):"));
        var table = new Table()
            .AddColumn("scale")
            .AddColumn(new TableColumn("tokens/image").RightAligned())
            .AddColumn(new TableColumn("used (≥ 1 hit)").RightAligned())
            .AddColumn(new TableColumn("reference rule").RightAligned());
        for (int si = 0; si < report.PatchNums.Length; si++)
        {
            int pn = report.PatchNums[si];
            table.AddRow($"{pn}x{pn}", (pn * pn).ToString(CultureInfo.InvariantCulture),
                Invariant($"{report.UsedPercent[si]:0.0}%"), Invariant($"{report.ReferenceRulePercent[si]:0.0}%"));
        }
        console.Write(table);
        writer.WriteLine(Invariant(
            $"reference rule: a code counts at a scale when its mean hits per image reach 0.08·{cfg.LatentSize}²/{report.VocabSize} = {0.08 * cfg.LatentSize * cfg.LatentSize / report.VocabSize:0.####} (the steady state of the reference's hit-EMA test)"));
        if (report.Classifier is { } rc)
        {
            string accuracy = rc.AccuracyOriginal is { } ao && rc.AccuracyReconstructed is { } ar
                ? Invariant($"; classifier accuracy {ar:0.0000} on the reconstructions vs {ao:0.0000} on the originals")
                : "";
            writer.WriteLine(Invariant($"rFD {rc.FrechetDistance:0.00} ({FdName} of the 8-bit reconstructions vs the originals){accuracy}"));
        }
        else if (classifierNote is not null) writer.WriteLine("note: " + classifierNote);
        writer.WriteLine(Invariant($"{report.Images / Math.Max(report.Seconds, 1e-9):0.0} images/s"));

        if (parse.GetValue(o.Json) is { } jsonPath)
        {
            var json = new JsonObject
            {
                ["kind"] = "tokenizer",
                ["tokenizer"] = Path.GetFullPath(dir),
                ["data"] = data.Description,
                ["images"] = report.Images,
                ["mse"] = report.Mse,
                ["mse_scale"] = "[-1, 1]",
                ["psnr_db"] = Finite(report.Psnr),
                ["psnr_of_mean_mse_db"] = Finite(report.PsnrOfMeanMse),
                ["psnr_scale"] = "[0, 1], mean over images",
                ["vocab_size"] = report.VocabSize,
                ["patch_nums"] = Array(report.PatchNums.Select(v => (JsonNode?)v)),
                ["usage_used_percent"] = Array(report.UsedPercent.Select(v => (JsonNode?)v)),
                ["usage_reference_rule_percent"] = Array(report.ReferenceRulePercent.Select(v => (JsonNode?)v)),
                ["usage_any_scale_percent"] = report.UsedPercentAnyScale,
                ["fd_name"] = report.Classifier is null ? null : FdName,
                ["rfd"] = report.Classifier?.FrechetDistance,
                ["classifier_accuracy_original"] = report.Classifier?.AccuracyOriginal,
                ["classifier_accuracy_reconstructed"] = report.Classifier?.AccuracyReconstructed,
                ["images_per_second"] = report.Images / Math.Max(report.Seconds, 1e-9),
            };
            WriteJson(jsonPath, json);
            writer.WriteLine($"json: {jsonPath}");
        }
        return 0;
    }

    private static int EvalModel(ParseResult parse, Options o, string modelDir)
    {
        var writer = parse.InvocationConfiguration.Output;
        var cfgs = ParseCfgs(parse.GetValue(o.Cfg)!);
        var classifierDir = parse.GetValue(o.Classifier)!;
        RequireFolder(modelDir, "Model");
        RequireFolder(classifierDir, "Classifier");
        var trust = TrustOption.Of(parse.GetValue(o.Trust));
        var device = DeviceOption.Of(parse, o.Device);
        using var classifier = FashionClassifier.Load(classifierDir, device, trust);
        var dtype = DeviceOption.DtypeOf(parse, o.Dtype);
        using var pipe = VarPipeline.Load(modelDir, device, trust, dtype);
        // The filters default to the model's recommended ones, as in `sample`; the guidance scales are always listed.
        var options = new GenerationEvalOptions
        {
            Cfgs = cfgs,
            PerClass = parse.GetValue(o.PerClass),
            TopK = parse.GetResult(o.TopK) is null ? pipe.Defaults.TopK : parse.GetValue(o.TopK),
            TopP = parse.GetValue(o.TopP) ?? pipe.Defaults.TopP,
            Seed = parse.GetValue(o.Seed),
            BatchSize = parse.GetValue(o.BatchSize) ?? 16,
        };
        GenerationEvaluation.Check(pipe, classifier, options);

        // The test images with the model's channels: the classifier turns real and generated colour images grey the
        // same way, and the tokenizer round trip gets the images the model was trained on.
        var data = Datasets.Open(parse.GetValue(o.Data)!, DataSplit.Test, pipe.Tokenizer.Config.InChannels, classifier.ImageSize);
        GenerationEvaluation.CheckClassNames(pipe, classifier, data);
        string? cacheDir = parse.GetValue(o.NoCache) ? null : parse.GetValue(o.CacheDir) ?? DefaultCacheDir();
        bool terminal = CliConsole.IsTerminal(writer);
        var console = CliConsole.For(writer);
        using var reference = terminal
            ? console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("test-set features", maxValue: data.Count);
                    return ReferenceFeatures.Compute(classifier, data, cacheDir, progress: new Reporter<int>(done => task.Value = done));
                })
            : ReferenceFeatures.Compute(classifier, data, cacheDir);
        var info = classifier.Info!;
        writer.WriteLine($"model {modelDir}: {pipe.ImageSize}x{pipe.ImageSize}, {pipe.NumClasses} classes, V = {pipe.VocabSize}" +
                         (dtype == ScalarType.Float32 ? "" : $"; transformer in {DeviceOption.Name(dtype)} (figures differ in detail from float32's)"));
        writer.WriteLine(Invariant(
            $"classifier {classifierDir} (weights sha256 {classifier.WeightsDigest![..16]}…): recorded test accuracy {Text(info.TestAccuracy)}, measured {reference.Accuracy():0.0000} on {reference.Count} test images{(reference.FromCache ? " (cached features)" : "")}"));
        if (reference.CacheProblem is { } problem) writer.WriteLine("note: " + problem);

        GenerationEvalReport report;
        if (terminal)
        {
            report = console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var tasks = cfgs.Select(c => ctx.AddTask(Invariant($"cfg {c}"), autoStart: false)).ToArray();
                    return GenerationEvaluation.Evaluate(pipe, classifier, reference, options, new Reporter<GenerationEvalProgress>(p =>
                    {
                        var task = tasks[p.CfgIndex];
                        if (!task.IsStarted) task.StartTask();
                        task.MaxValue = p.Sampling.StepsTotal;
                        task.Value = p.Sampling.StepsDone;
                        task.Description = Invariant($"cfg {p.Cfg}: {p.Sampling.ImagesDone}/{p.Sampling.ImagesTotal} images");
                    }), testSplit: data);
                });
        }
        else
        {
            report = GenerationEvaluation.Evaluate(pipe, classifier, reference, options, onRun: r =>
            {
                if (r.Cfg is { } c) writer.WriteLine(Invariant($"cfg {c}: {r.Images} images in {r.Seconds:0.0} s"));
            }, testSplit: data);
        }

        writer.WriteLine(Invariant(
            $"{report.PerClass} images per class × {report.Classes} classes per cfg; top-k {report.TopK}, top-p {report.TopP}, seed {report.Seed}+i; {FdName} vs {report.FdReferenceImages} test images; precision/recall (k=3) vs {report.PrecisionRecallReferenceImages} test images"));
        var table = new Table()
            .AddColumn("cfg")
            .AddColumn(new TableColumn("images").RightAligned())
            .AddColumn(new TableColumn("class consistency").RightAligned())
            .AddColumn(new TableColumn(FdName).RightAligned())
            .AddColumn(new TableColumn("precision").RightAligned())
            .AddColumn(new TableColumn("recall").RightAligned())
            .AddColumn(new TableColumn("images/s").RightAligned());
        var rows = new (string Name, GenerationSetReport? Set)[] { ("real (test)", report.Baseline), ("tokenizer round trip", report.Reconstructed) }
            .Concat(report.Runs.Select(r => (Name: r.Cfg!.Value.ToString(CultureInfo.InvariantCulture), Set: (GenerationSetReport?)r)));
        foreach (var (name, r) in rows.Where(x => x.Set is not null).Select(x => (x.Name, x.Set!)))
            table.AddRow(name, r.Images.ToString(CultureInfo.InvariantCulture),
                Invariant($"{r.ClassConsistency:0.000}"), Invariant($"{r.FrechetDistance:0.00}"), Invariant($"{r.Precision:0.000}"), Invariant($"{r.Recall:0.000}"),
                r.ImagesPerSecond is { } ips ? Invariant($"{ips:0.00}") : "-");
        console.Write(table);
        if (report.Baseline is not null)
            writer.WriteLine("real (test): held-out test images scored the same way, for scale (its consistency is the classifier's accuracy on them)");
        if (report.Reconstructed is not null)
            writer.WriteLine("tokenizer round trip: the same images encoded and decoded by the model's tokenizer: the ceiling for a generator on it");

        if (parse.GetValue(o.Json) is { } jsonPath)
        {
            var json = new JsonObject
            {
                ["kind"] = "generation",
                ["model"] = Path.GetFullPath(modelDir),
                ["dtype"] = DeviceOption.Name(dtype),
                ["classifier"] = new JsonObject
                {
                    ["path"] = Path.GetFullPath(classifierDir),
                    ["weights_sha256"] = classifier.WeightsDigest,
                    ["recorded_test_accuracy"] = info.TestAccuracy,
                    ["measured_test_accuracy"] = reference.Accuracy(),
                    ["test_images"] = reference.Count,
                },
                ["data"] = data.Description,
                ["classes"] = report.Classes,
                ["per_class"] = report.PerClass,
                ["top_k"] = report.TopK,
                ["top_p"] = report.TopP,
                ["seed"] = report.Seed,
                ["fd_name"] = FdName,
                ["fd_reference_images"] = report.FdReferenceImages,
                ["precision_recall_k"] = options.K,
                ["precision_recall_reference_images"] = report.PrecisionRecallReferenceImages,
                ["baseline"] = report.Baseline is null ? null : SetJson(report.Baseline),
                ["tokenizer_round_trip"] = report.Reconstructed is null ? null : SetJson(report.Reconstructed),
                ["runs"] = Array(report.Runs.Select(r => (JsonNode?)SetJson(r))),
            };
            WriteJson(jsonPath, json);
            writer.WriteLine($"json: {jsonPath}");
        }
        return 0;
    }

    private static JsonObject SetJson(GenerationSetReport r) => new()
    {
        ["cfg"] = r.Cfg,
        ["images"] = r.Images,
        ["class_consistency"] = r.ClassConsistency,
        ["class_consistency_per_class"] = Array(r.ConsistencyPerClass.Select(v => (JsonNode?)v)),
        ["fd_fashion_classifier_features"] = r.FrechetDistance,
        ["precision"] = r.Precision,
        ["recall"] = r.Recall,
        ["images_per_second"] = r.ImagesPerSecond,
        ["seconds"] = r.Seconds,
    };

    /// <summary>Guidance scales from "1,2,4": finite numbers ≥ 0, at least one.</summary>
    internal static double[] ParseCfgs(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var result = new double[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!double.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out result[i]) || !double.IsFinite(result[i]) || result[i] < 0)
                throw new VarSharpException($"--cfg takes comma-separated guidance scales ≥ 0 like 1,2,4 but got '{text}'.");
        return result;
    }

    /// <summary>
    /// The classifier that scores a tokenizer's reconstructions: one named with --classifier must load and fit; the
    /// default one is used only when it exists and fits, otherwise the note says why the rFD is left out.
    /// </summary>
    private static (FashionClassifier? Classifier, string? Note) TokenizerClassifier(ParseResult parse, Options o, VqVaeConfig vqvae)
    {
        var dir = parse.GetValue(o.Classifier)!;
        bool named = parse.GetResult(o.Classifier) is { Implicit: false };
        if (!named && !Directory.Exists(dir))
            return (null, $"no classifier at {dir}, so no rFD; name one with --classifier");
        if (named) RequireFolder(dir, "Classifier");
        var classifier = FashionClassifier.Load(dir, DeviceOption.Of(parse, o.Device), TrustOption.Of(parse.GetValue(o.Trust)));
        if (classifier.ImageSize == vqvae.ImageSize) return (classifier, null);
        classifier.Dispose();
        string why = $"the classifier {dir} takes {classifier.ImageSize}×{classifier.ImageSize} images but the tokenizer works on {vqvae.ImageSize}×{vqvae.ImageSize}";
        if (named) throw new VarSharpException(why + "; use a classifier trained at the tokenizer's image size.");
        return (null, why + ", so no rFD");
    }

    private static void RequireFolder(string dir, string what)
    {
        if (!Directory.Exists(dir)) throw PathErrors.FolderMissing(dir, $"{what} folder");
    }

    private static string DefaultCacheDir() =>
        Environment.GetEnvironmentVariable("VARSHARP_CACHE") is { Length: > 0 } env
            ? env
            : Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
                ? xdg
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "varsharp");

    private static JsonArray Array(IEnumerable<JsonNode?> items) => new(items.ToArray());

    private static double? Finite(double v) => double.IsFinite(v) ? v : null;

    private static string Text(double? v) => v is { } d ? d.ToString("0.0000", CultureInfo.InvariantCulture) : "(none)";

    private static void WriteJson(string path, JsonObject json) =>
        ImageIO.WriteAtomically(path, Encoding.UTF8.GetBytes(json.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n"));

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    private sealed class Reporter<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
