using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using VarSharp.Checkpoints;
using VarSharp.Data;
using VarSharp.Sampling;

namespace VarSharp.Cli.Commands;

/// <summary>
/// `sample`: class-conditional generation. Writes one PNG per image (NNN-classC.png), grid.png, samples.jsonl (one JSON
/// line per image) and with --scales the coarse-to-fine strip of every image (NNN-classC-scales.png). The same arguments
/// give the same bytes.
/// </summary>
internal static class SampleCommand
{
    public static Command Create()
    {
        var models = new PipelineOptions();
        var classes = new Option<string[]>("--class", "-c")
        {
            Description = "Class to generate, by id or name (7 or Sneaker; name:TEXT for a name that is a number or holds commas; -1 or uncond: unconditional); repeat it or give a comma list (3,Bag). Omitted: classes are drawn uniformly",
        };
        var count = new Option<int>("--count", "-n")
        {
            Description = "Images per class when --class is given; the total number of images when classes are drawn",
            DefaultValueFactory = _ => 1,
        };
        var cfg = new Option<double?>("--cfg")
        {
            Description = "Guidance scale ≥ 0 (t = cfg·si/(S−1)). Default: the model's recommended value (its config's 'sampling' block), else the reference demo's 4",
        };
        var topK = new Option<int?>("--top-k")
        {
            Description = "Keep the k most likely tokens, 0 = off, at most the vocabulary size. Default: the model's recommended value, " +
                          "else the reference demo's share of the codebook, round(900·V/4096) (900 for V = 4096, 14 for V = 64)",
        };
        var topP = new Option<double?>("--top-p") { Description = "Nucleus mass to keep, in [0, 1], 0 = off. Default: the model's recommended value, else the reference demo's 0.95" };
        var seed = new Option<long>("--seed", "-s") { Description = "Seed; image i uses its own generator seeded seed+i", DefaultValueFactory = _ => 0 };
        var moreSmooth = new Option<bool>("--more-smooth") { Description = "Gumbel-softmax smoothing of the fed-back embeddings (the reference's more_smooth; for looks)" };
        var sharedRng = new Option<bool>("--shared-rng")
        {
            Description = "One generator for the whole run, consumed exactly like autoregressive_infer_cfg(g_seed=seed) on PyTorch 2.x " +
                          "(all images in one batch; an image then depends on the others requested)",
        };
        var batch = new Option<int>("--batch-size") { Description = "Images sampled together (does not change the results)", DefaultValueFactory = _ => 8 };
        var output = new Option<string>("--output", "-o") { Description = "Folder for the PNGs, grid.png and samples.jsonl", Required = true };
        var scales = new Option<bool>("--scales") { Description = "Also write NNN-classC-scales.png: each image after every scale, coarse to fine" };
        var edit = new Option<string?>("--edit") { Description = "Zero-shot editing: keep this image (PNG/JPEG of the model's size) and generate only inside --box (or outside, with --outpaint)" };
        var box = new Option<string?>("--box") { Description = "With --edit: the region X0,Y0,X1,Y1 in pixels, X1 and Y1 exclusive" };
        var outpaint = new Option<bool>("--outpaint") { Description = "With --edit: keep the inside of --box and generate the outside" };
        var knownThreshold = new Option<double?>("--known-threshold")
        {
            Description = "With --edit: a token is taken from the image when at least this share of its cell is kept (0.5)",
        };
        var gridMax = new Option<int>("--grid-max")
        {
            Description = "grid.png shows at most the first N images (0 = no grid), so large runs stay within memory",
            DefaultValueFactory = _ => SampleRun.DefaultGridMax,
        };
        var resize = InputImage.ResizeOption();
        var threads = LongRun.ThreadsOption();
        var force = new Option<bool>("--force") { Description = "Replace images an earlier run with other settings left in the output folder" };
        var command = new Command("sample", "Generate class-conditional images with a VAR model, or complete a partly kept image (--edit)")
        {
            classes, count, cfg, topK, topP, seed, moreSmooth, sharedRng, batch, output, scales, edit, box, outpaint, knownThreshold, gridMax, resize, threads, force,
        };
        models.AddTo(command);
        command.SetAction(parse =>
        {
            LongRun.SetThreads(parse.GetValue(threads));
            var classTexts = SplitClasses(parse.GetValue(classes));
            var outDir = parse.GetRequiredValue(output);
            var writer = parse.InvocationConfiguration.Output;
            using var pipe = models.Load(parse);
            var requestedClasses = classTexts?.Select(pipe.ClassId).ToArray();
            // What the command line leaves out comes from the model's recommended settings (else the reference demo's).
            var recommended = pipe.DefaultOptions();
            var options = recommended with
            {
                Classes = requestedClasses,
                Count = parse.GetValue(count),
                Cfg = parse.GetValue(cfg) ?? recommended.Cfg,
                TopK = parse.GetResult(topK) is null ? recommended.TopK : parse.GetValue(topK),
                TopP = parse.GetValue(topP) ?? recommended.TopP,
                Seed = parse.GetValue(seed),
                MoreSmooth = parse.GetValue(moreSmooth),
                PerSampleSeeds = !parse.GetValue(sharedRng),
                BatchSize = parse.GetValue(batch),
                Scales = parse.GetValue(scales),
                Edit = EditOf(pipe, parse.GetValue(edit), parse.GetValue(box), parse.GetValue(outpaint), parse.GetValue(knownThreshold),
                    parse.GetValue(resize), writer),
            };
            pipe.Validate(options);
            if (parse.GetValue(gridMax) is < 0 and var g) throw new VarSharpException($"--grid-max must be 0 (no grid) or more but is {g}.");
            if (File.Exists(outDir)) throw new VarSharpException($"{Path.GetFullPath(outDir)} is a file; give a folder for the images (-o DIR).");
            ModelBundle.CheckOutsideBundles(outDir, "The output folder");

            Directory.CreateDirectory(outDir);
            // What an edit was made from, so that its images can be told apart and reproduced from samples.jsonl.
            var editRecord = parse.GetValue(edit) is { } editImage ? new
            {
                image = Path.GetFullPath(editImage),
                image_sha256 = Checkpoints.FileDigest.Sha256(editImage),
                box = parse.GetValue(box),
                outpaint = parse.GetValue(outpaint),
                known_threshold = parse.GetValue(knownThreshold) ?? 0.5,
                resize = parse.GetValue(resize),
            } : null;
            var run = new SampleRun(outDir, pipe, options, parse.GetValue(gridMax), editRecord);
            if (!parse.GetValue(force) && run.Conflicts() is > 0 and var lost)
                throw new VarSharpException(
                    $"{Path.GetFullPath(outDir)} holds {lost} image(s) of an earlier run with other settings that this run would overwrite; write to another folder, or pass --force to replace them.");
            var skip = run.Resumable ? run.AlreadyDone : (Func<int, bool>?)null;
            int written = CliConsole.IsTerminal(writer) ? WithProgress(pipe, options, writer, skip, run.Write) : Consume(pipe.GenerateBatches(options, skip: skip), run.Write);
            run.Finish();

            int topKUsed = options.ResolveTopK(pipe.VocabSize);
            writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {written} image(s) of {pipe.ImageSize}x{pipe.ImageSize} to {outDir}{(run.Kept > 0 ? $" ({run.Kept} more were already there from an earlier run with the same settings)" : "")} (classes {run.ClassList}; cfg {options.Cfg}, top-k {topKUsed}, top-p {options.TopP}, seed {options.Seed}{(options.PerSampleSeeds ? "+i" : ", shared generator")}{(options.MoreSmooth ? ", more smooth" : "")})"));
            writer.WriteLine($"grid: {Path.Combine(outDir, "grid.png")}{run.GridNote}; log: {Path.Combine(outDir, "samples.jsonl")}" +
                             (options.Scales ? "; coarse-to-fine strips: *-scales.png" : ""));
            return 0;
        });
        return command;
    }

    /// <summary>The edit that --edit/--box/--outpaint describe, or null without --edit.</summary>
    private static ImageEdit? EditOf(VarPipeline pipe, string? image, string? box, bool outpaint, double? threshold, bool resize, TextWriter writer)
    {
        if (image is null)
        {
            if (box is not null || outpaint || threshold is not null || resize)
                throw new VarSharpException("--box, --outpaint, --known-threshold and --resize describe an edit; give the image to edit with --edit IMAGE.");
            return null;
        }
        if (box is null) throw new VarSharpException("--edit needs the region to generate: --box X0,Y0,X1,Y1 (pixels, X1 and Y1 exclusive).");
        var b = OptionText.Ints(box, "--box", example: "8,8,24,24");
        if (b.Length != 4) throw new VarSharpException($"--box takes four integers X0,Y0,X1,Y1 but got '{box}'.");
        using var img = InputImage.Load(image, pipe.Tokenizer.Config.InChannels, pipe.ImageSize, resize, writer);
        pipe.Tokenizer.CheckImage(img);
        return ImageEdit.Box(img, b[0], b[1], b[2], b[3], outpaint, threshold ?? 0.5);
    }

    /// <summary>The classes of repeated --class options, each possibly a comma list, as given (ids or names).</summary>
    internal static string[]? SplitClasses(string[]? values)
    {
        if (values is null || values.Length == 0) return null;
        // "name:…" is one class name whole, commas included (ImageNet's "tench, Tinca tinca").
        var parts = values.SelectMany(v => v.TrimStart().StartsWith("name:", StringComparison.OrdinalIgnoreCase) ? [v.Trim()] : v.Split(',', StringSplitOptions.TrimEntries)).ToArray();
        if (parts.Any(p => p.Length == 0)) throw new VarSharpException("--class has an empty entry; give class ids or names separated by commas.");
        return parts;
    }

    private static int Consume(IEnumerable<IReadOnlyList<GeneratedImage>> batches, Action<IReadOnlyList<GeneratedImage>> write)
    {
        int n = 0;
        foreach (var batch in batches)
        {
            write(batch);
            n += batch.Count;
        }
        return n;
    }

    private static int WithProgress(VarPipeline pipe, SampleOptions options, TextWriter writer, Func<int, bool>? skip, Action<IReadOnlyList<GeneratedImage>> write)
    {
        var console = CliConsole.For(writer);
        return console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("sampling");
                return Consume(pipe.GenerateBatches(options, new Reporter(p =>
                {
                    task.MaxValue = p.StepsTotal;
                    task.Value = p.StepsDone;
                    task.Description = $"sampling {p.ImagesDone}/{p.ImagesTotal} images";
                }), skip: skip), write);
            });
    }

    private sealed class Reporter(Action<SampleProgress> report) : IProgress<SampleProgress>
    {
        public void Report(SampleProgress value) => report(value);
    }
}
