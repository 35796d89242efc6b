using VarSharp.Checkpoints;
using VarSharp.Data;
using VarSharp.Tokenizer;
using VarSharp.Transformer;
using static TorchSharp.torch;

namespace VarSharp.Sampling;

/// <summary>
/// What to generate. Defaults follow the reference demo (<c>demo_sample.ipynb</c>: cfg 4, top-k 900, top-p 0.95,
/// seed 0), with top-k scaled to small vocabularies (see <see cref="TopK"/>).
/// </summary>
public sealed record SampleOptions
{
    /// <summary>Class ids to generate; null draws each image's class uniformly from its generator.</summary>
    public int[]? Classes { get; init; }

    /// <summary>Images per class when <see cref="Classes"/> is given (class-major order: 3,3,7,7); the total number of images when classes are drawn.</summary>
    public int Count { get; init; } = 1;

    /// <summary>Guidance scale, ≥ 0 (t = cfg·si/(S−1); 0 is plain conditional sampling).</summary>
    public double Cfg { get; init; } = 4.0;

    /// <summary>
    /// Tokens kept by top-k, 0 = off, at most the vocabulary size V. Null (the default) keeps the reference demo's
    /// share of the codebook, 900 of 4096: round(900·V/4096), at least 1 — 900 for the released V = 4096, 14 for V = 64.
    /// </summary>
    public int? TopK { get; init; }

    /// <summary>Nucleus mass kept by top-p, in [0, 1]; 0 = off.</summary>
    public double TopP { get; init; } = 0.95;

    /// <summary>Gumbel-softmax smoothing of the fed-back embeddings (the reference's more_smooth; for looks, not for metrics).</summary>
    public bool MoreSmooth { get; init; }

    /// <summary>
    /// The seed. With <see cref="PerSampleSeeds"/> image i (0-based, over the whole request) uses its own generator
    /// seeded Seed + i, so it does not depend on the batch size or on the other images requested.
    /// </summary>
    public long Seed { get; init; }

    /// <summary>
    /// True (default): one generator per image (see <see cref="Seed"/>). False: the whole request is one batch drawing
    /// from one generator seeded <see cref="Seed"/>, exactly like <c>autoregressive_infer_cfg(g_seed=Seed)</c>;
    /// <see cref="BatchSize"/> is then ignored.
    /// </summary>
    public bool PerSampleSeeds { get; init; } = true;

    /// <summary>Images sampled together (the transformer runs on twice as many rows for guidance). Results do not depend on it.</summary>
    public int BatchSize { get; init; } = 8;

    /// <summary>Also return each image's coarse-to-fine strip (the image decoded after every scale).</summary>
    public bool Scales { get; init; }

    /// <summary>Zero-shot editing: keep this image where its mask says so and generate the rest (null: generate everything).</summary>
    public ImageEdit? Edit { get; init; }

    /// <summary>The top-k actually used for a vocabulary of <paramref name="vocabSize"/> tokens.</summary>
    public int ResolveTopK(int vocabSize) => TopK ?? Math.Max(1, (int)Math.Round(900.0 * vocabSize / 4096, MidpointRounding.AwayFromZero));

    public SamplerSettings ToSettings(int vocabSize) => new() { Cfg = Cfg, TopK = ResolveTopK(vocabSize), TopP = TopP, MoreSmooth = MoreSmooth };
}

/// <summary>One image of an explicit batch (<see cref="VarPipeline.GenerateRows"/>): its class, or null to draw it from the image's own generator, and that generator's seed.</summary>
public readonly record struct SampleRow(int? Class, long Seed);

/// <summary>Every row's image decoded after scale <see cref="ScaleIndex"/> (0-based, of <see cref="NumScales"/>; <see cref="PatchSize"/>×<see cref="PatchSize"/> tokens), as PNG bytes in row order.</summary>
public sealed record ScaleFrame(int ScaleIndex, int NumScales, int PatchSize, IReadOnlyList<byte[]> Png);

/// <summary>Progress of <see cref="VarPipeline.Generate"/>: images finished, and scale steps done over all batches.</summary>
public readonly record struct SampleProgress(int ImagesDone, int ImagesTotal, int StepsDone, int StepsTotal);

/// <summary>One generated image as 8-bit pixels and PNG bytes (no native memory to dispose).</summary>
public sealed record GeneratedImage
{
    /// <summary>Position in the request, 0-based.</summary>
    public required int Index { get; init; }

    public required int Class { get; init; }

    /// <summary>The seed of this image's own generator, or null when the request shared one generator.</summary>
    public required long? Seed { get; init; }

    public required int Width { get; init; }
    public required int Height { get; init; }
    public required int Channels { get; init; }

    /// <summary>8-bit pixels in (H, W, C) order.</summary>
    public required byte[] Pixels { get; init; }

    public required byte[] Png { get; init; }

    /// <summary>With <see cref="SampleOptions.Scales"/>: PNG of the image after every scale, left to right, coarse to fine.</summary>
    public byte[]? ScalesPng { get; init; }

    /// <summary>Writes <see cref="Png"/> to a file (atomically).</summary>
    public void Save(string path) => ImageIO.WriteAtomically(path, Png);
}

/// <summary>
/// Tokenizer + transformer + sampler: class ids in, images out.
/// <code>
/// using var pipe = VarPipeline.Load("models/x");
/// var images = pipe.Generate(pipe.DefaultOptions() with { Classes = [3, 7], Seed = 1 });
/// foreach (var im in images) im.Save($"class{im.Class}-{im.Index}.png");
/// </code>
/// </summary>
public sealed class VarPipeline : IDisposable
{
    private readonly bool _ownsModels;

    /// <summary>Wraps models that are already loaded; with <paramref name="ownsModels"/> disposing the pipeline disposes them.</summary>
    public VarPipeline(VqVae tokenizer, VarModel model, bool ownsModels = false)
    {
        Sampler = new VarSampler(model, tokenizer);
        _ownsModels = ownsModels;
    }

    /// <summary>
    /// Loads a model folder (config.json with `vqvae` and `var` blocks + model.safetensors or weights.safetensors). A
    /// bundle is verified against its manifest first; with <paramref name="trust"/> only a bundle signed by one of its
    /// keys loads (<see cref="BundleSignature"/>).
    /// </summary>
    public static VarPipeline Load(string modelDir, Device? device = null, BundleTrust? trust = null, ScalarType dtype = ScalarType.Float32)
    {
        using var files = ModelFiles.Read(modelDir, IsModelKey, trust);
        return Load(files, device, dtype);
    }

    /// <summary>Loads from a config file and a weights file holding `vae.*` and `var.*` tensors.</summary>
    public static VarPipeline Load(string configPath, string weightsPath, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        using var files = ModelFiles.Read(configPath, weightsPath, IsModelKey);
        return Load(files, device, dtype);
    }

    private static bool IsModelKey(string name) => ModelFolder.IsTokenizerKey(name) || ModelFolder.IsTransformerKey(name);

    /// <summary>Builds both models, the sampling defaults and the class names from one reading of a folder's files.</summary>
    /// <param name="dtype">The transformer's type (see <see cref="ModelFolder.BuildTransformer"/>); the tokenizer stays float32.</param>
    public static VarPipeline Load(ModelFiles files, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        var model = ModelFolder.BuildTransformer(files, device, dtype);
        VqVae? vae = null;
        try
        {
            vae = ModelFolder.BuildTokenizer(files, device);
            var defaults = ModelFolder.ReadSamplingDefaults(files.Config, files.ConfigPath, model.Config.VocabSize);
            var names = ModelFolder.ReadClassNames(files.Config, files.ConfigPath, model.Config.NumClasses);
            return new VarPipeline(vae, model, ownsModels: true) { Defaults = defaults, ClassNames = names, WeightsSha256 = files.WeightsSha256 };
        }
        catch
        {
            vae?.Dispose();
            model.Dispose();
            throw;
        }
    }

    public VarSampler Sampler { get; }

    /// <summary>SHA-256 of the weights file the pipeline was loaded from (null when built from models in memory).</summary>
    public string? WeightsSha256 { get; init; }

    /// <summary>The sampling settings the model's config recommends (its `sampling` block), else the reference demo's.</summary>
    public SamplingDefaults Defaults { get; init; } = SamplingDefaults.Reference;

    /// <summary>Options carrying <see cref="Defaults"/>; set the rest with <c>with</c>: <c>pipe.DefaultOptions() with { Classes = [3] }</c>.</summary>
    public SampleOptions DefaultOptions() => new() { Cfg = Defaults.Cfg, TopK = Defaults.TopK, TopP = Defaults.TopP };

    /// <summary>
    /// One display name per class: the config's `classes` (see <see cref="ModelFolder.ReadClassNames"/>) when loaded
    /// from a folder, else "class 0", "class 1", ….
    /// </summary>
    public IReadOnlyList<string> ClassNames
    {
        get => _classNames ??= Enumerable.Range(0, NumClasses).Select(i => $"class {i}").ToArray();
        init
        {
            ArgumentNullException.ThrowIfNull(value);
            if (value.Count != NumClasses) throw new VarSharpException($"{value.Count} class names were given for a model of {NumClasses} classes.");
            _classNames = value;
        }
    }

    private IReadOnlyList<string>? _classNames;

    /// <summary>
    /// The class id that <paramref name="idOrName"/> stands for: an integer is an id; other text is one of
    /// <see cref="ClassNames"/> (case-insensitive); <c>name:TEXT</c> is always a name, for models whose class names are
    /// numbers (image folders "0" … "11" sort as 0, 1, 10, 11, 2, …, so the class named 2 has id 4). Anything else is a
    /// one-sentence <see cref="VarSharpException"/>.
    /// </summary>
    public int ClassId(string idOrName)
    {
        ArgumentNullException.ThrowIfNull(idOrName);
        var text = idOrName.Trim();
        bool nameOnly = text.StartsWith("name:", StringComparison.OrdinalIgnoreCase);
        if (nameOnly) text = text[5..].Trim();
        else if (int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int id))
        {
            // As the reference's sampler: a negative label is the null class, i.e. unconditional sampling.
            // num_classes itself, as outputs report the null class, is taken back as well.
            if (id == -1 || id == UnconditionalClass) return UnconditionalClass;
            if (id < 0 || id > NumClasses) throw new VarSharpException($"class id {id} is unknown: this model has classes 0 to {NumClasses - 1} (and -1 or 'uncond' samples unconditionally).");
            return id;
        }
        else if (UnconditionalNames.Contains(text, StringComparer.OrdinalIgnoreCase) && !ClassNames.Contains(text, StringComparer.OrdinalIgnoreCase))
            return UnconditionalClass;
        for (int i = 0; i < ClassNames.Count; i++)
            if (string.Equals(ClassNames[i], text, StringComparison.OrdinalIgnoreCase)) return i;
        throw new VarSharpException($"'{text}' is {(nameOnly ? "not" : "neither a class id (0 to " + (NumClasses - 1) + ") nor")} a class name of this model ({string.Join(", ", ClassNames)}).");
    }

    public VqVae Tokenizer => Sampler.Tokenizer;
    public VarModel Model => Sampler.Model;
    public int NumClasses => Model.Config.NumClasses;

    /// <summary>The class id that samples unconditionally: the extra null class the model learned with label dropout.</summary>
    public int UnconditionalClass => NumClasses;

    /// <summary>What <see cref="ClassId"/> accepts for <see cref="UnconditionalClass"/> (besides -1), unless the model has a class of that name.</summary>
    public static readonly IReadOnlyList<string> UnconditionalNames = ["uncond", "unconditional"];

    /// <summary>The display name of a class id, "unconditional" for <see cref="UnconditionalClass"/>.</summary>
    public string ClassName(int id) => id == UnconditionalClass ? "unconditional" : ClassNames[id];
    public int VocabSize => Model.Config.VocabSize;
    public int ImageSize => Tokenizer.Config.ImageSize;

    /// <summary>The most images one request may ask for (count × classes): the request's label list is held in memory.</summary>
    public const long MaxImagesPerRequest = 10_000_000;

    /// <summary>Throws a one-sentence <see cref="VarSharpException"/> for options this model cannot honour.</summary>
    public void Validate(SampleOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Count <= 0) throw new VarSharpException($"count must be positive, found {options.Count}.");
        long total = (long)options.Count * (options.Classes?.Length ?? 1);
        if (total > MaxImagesPerRequest)
            throw new VarSharpException($"the request asks for {total} images, more than the {MaxImagesPerRequest} one request may; split it into several.");
        if (options.BatchSize <= 0) throw new VarSharpException($"batch size must be positive, found {options.BatchSize}.");
        if (options.Classes is { } classes)
        {
            if (classes.Length == 0) throw new VarSharpException("the class list is empty; give at least one class id or none to draw classes.");
            foreach (var c in classes)
                if (c < 0 || c > NumClasses)
                    throw new VarSharpException($"class id {c} is unknown: this model has classes 0 to {NumClasses - 1}, and {NumClasses} samples unconditionally.");
        }
        options.ToSettings(VocabSize).Validate(Model.Config);
        options.Edit?.Validate(Tokenizer);
    }

    /// <summary>
    /// Generates the images that <paramref name="options"/> asks for, in request order. A cancelled
    /// <paramref name="cancellationToken"/> stops between scales with an <see cref="OperationCanceledException"/>.
    /// </summary>
    public IReadOnlyList<GeneratedImage> Generate(SampleOptions options, IProgress<SampleProgress>? progress = null,
        CancellationToken cancellationToken = default) =>
        GenerateBatches(options, progress, cancellationToken).SelectMany(batch => batch).ToList();

    /// <summary>
    /// <see cref="Generate"/> one batch at a time, so a large request can be written out as it goes instead of held in
    /// memory. With per-sample seeds, <paramref name="skip"/> leaves out the images (by index) a caller already has:
    /// every other image is exactly what a full run gives, because image i depends only on its class and seed + i.
    /// </summary>
    public IEnumerable<IReadOnlyList<GeneratedImage>> GenerateBatches(SampleOptions options, IProgress<SampleProgress>? progress = null,
        CancellationToken cancellationToken = default, Func<int, bool>? skip = null)
    {
        Validate(options);
        if (skip is not null && !options.PerSampleSeeds)
            throw new VarSharpException("only images with their own seeds can be skipped; with one shared generator every image depends on the others.");
        return Batches(options, progress, cancellationToken, skip);
    }

    private IEnumerable<IReadOnlyList<GeneratedImage>> Batches(SampleOptions options, IProgress<SampleProgress>? progress,
        CancellationToken cancellationToken, Func<int, bool>? skip)
    {
        var settings = options.ToSettings(VocabSize);
        int[]? labels = options.Classes?.SelectMany(c => Enumerable.Repeat(c, options.Count)).ToArray();
        int total = labels?.Length ?? options.Count;
        var todo = Enumerable.Range(0, total).Where(i => skip is null || !skip(i)).ToArray();
        int batchSize = options.PerSampleSeeds ? options.BatchSize : total;
        int batches = (todo.Length + batchSize - 1) / batchSize, S = Model.Config.NumScales;
        var extras = options.Scales ? SampleExtras.ScaleImages : SampleExtras.None;
        using var constraint = options.Edit is null ? null : TokenConstraint.From(options.Edit, Tokenizer);
        int done = total - todo.Length;

        for (int b = 0; b < batches; b++)
        {
            var indices = todo.AsSpan(b * batchSize, Math.Min(batchSize, todo.Length - b * batchSize)).ToArray();
            int n = indices.Length;
            var rng = options.PerSampleSeeds ? SampleRng.PerSample(indices.Select(i => unchecked(options.Seed + i)).ToArray()) : SampleRng.Shared(options.Seed);
            int batch = b, doneBefore = done;
            var scaleProgress = progress is null ? null : new InlineProgress<int>(si =>
                progress.Report(new SampleProgress(doneBefore, total, batch * S + si, batches * S)));
            var images = new GeneratedImage[n];
            using (var sample = labels is null
                ? Sampler.SampleRandomClasses(n, settings, rng, extras, scaleProgress, cancellationToken: cancellationToken, constraint: constraint)
                : Sampler.Sample(indices.Select(i => labels[i]).ToArray(), settings, rng, extras, scaleProgress, cancellationToken: cancellationToken, constraint: constraint))
            {
                for (int i = 0; i < n; i++) images[i] = ToImage(sample, i, indices[i], rng);
            }
            done += n;
            progress?.Report(new SampleProgress(done, total, (b + 1) * S, batches * S));
            yield return images;
        }
    }

    /// <summary>
    /// Samples one batch of explicitly given rows, each with its own generator, so row i is exactly the image that
    /// <see cref="Generate"/> gives for that class and seed, whatever the other rows are: this is what lets a server
    /// coalesce requests into one batch. Rows either all give a class or all draw one. <paramref name="scaleFrame"/>, when
    /// given, receives every row's image after each scale, coarse to fine. Images come back in row order
    /// (<see cref="GeneratedImage.Index"/> is the row). With <paramref name="edit"/> every row completes that image.
    /// </summary>
    public IReadOnlyList<GeneratedImage> GenerateRows(IReadOnlyList<SampleRow> rows, SamplerSettings settings,
        Action<ScaleFrame>? scaleFrame = null, CancellationToken cancellationToken = default, ImageEdit? edit = null)
    {
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentNullException.ThrowIfNull(settings);
        if (rows.Count == 0) throw new VarSharpException("a batch needs at least one row, found none.");
        edit?.Validate(Tokenizer);
        bool given = rows[0].Class is not null;
        if (rows.Any(r => (r.Class is not null) != given))
            throw new VarSharpException("the rows of one batch must either all give a class or all draw one.");
        settings.Validate(Model.Config);
        var rng = SampleRng.PerSample(rows.Select(r => r.Seed).ToArray());
        var patchNums = Model.Config.PatchNums;
        Action<int, Tensor>? onScale = scaleFrame is null ? null : (si, images_BCHW) =>
        {
            var png = new byte[rows.Count][];
            for (int i = 0; i < rows.Count; i++)
            {
                using var img_CHW = images_BCHW[i].mul(2).sub_(1);
                png[i] = ImageIO.EncodePng(img_CHW);
            }
            scaleFrame(new ScaleFrame(si, patchNums.Length, patchNums[si], png));
        };
        using var constraint = edit is null ? null : TokenConstraint.From(edit, Tokenizer);
        using var sample = given
            ? Sampler.Sample(rows.Select(r => r.Class!.Value).ToArray(), settings, rng, scaleImage: onScale, cancellationToken: cancellationToken, constraint: constraint)
            : Sampler.SampleRandomClasses(rows.Count, settings, rng, scaleImage: onScale, cancellationToken: cancellationToken, constraint: constraint);
        var result = new GeneratedImage[rows.Count];
        for (int i = 0; i < rows.Count; i++) result[i] = ToImage(sample, i, i, rng);
        return result;
    }

    private static GeneratedImage ToImage(SampleResult sample, int row, int index, SampleRng rng)
    {
        using var scope = NewDisposeScope();
        var img_CHW = sample.Images[row].mul(2).sub_(1);   // [0, 1] → [−1, 1]
        var (pixels, c, h, w) = ImageIO.ToPixels(img_CHW);
        byte[]? strip = null;
        if (sample.ScaleImages is { } perScale)
        {
            var steps_S3HW = perScale.select(1, row).mul(2).sub_(1);
            strip = ImageIO.EncodePng(ImageIO.Grid(steps_S3HW, columns: (int)steps_S3HW.shape[0]));
        }
        return new GeneratedImage
        {
            Index = index,
            Class = (int)sample.Labels[row],
            Seed = rng.RowSeeds?[row],
            Width = w,
            Height = h,
            Channels = c,
            Pixels = pixels,
            Png = ImageIO.EncodePng(pixels, c, h, w),
            ScalesPng = strip,
        };
    }

    /// <summary>Tiles generated images into one PNG, <paramref name="columns"/> per row (default: about square).</summary>
    public static byte[] GridPng(IReadOnlyList<GeneratedImage> images, int columns = 0)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count == 0) throw new VarSharpException("a grid needs at least one image, found none.");
        using var scope = NewDisposeScope();
        var batch = stack(images.Select(im => ImageIO.FromPixels(im.Pixels, im.Channels, im.Height, im.Width)).ToArray(), 0);
        if (columns <= 0) columns = (int)Math.Ceiling(Math.Sqrt(images.Count));
        return ImageIO.EncodePng(ImageIO.Grid(batch, columns));
    }

    public void Dispose()
    {
        if (!_ownsModels) return;
        Model.Dispose();
        Tokenizer.Dispose();
    }

    /// <summary>IProgress that reports synchronously on the calling thread (Progress&lt;T&gt; would post to a thread pool).</summary>
    private sealed class InlineProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
