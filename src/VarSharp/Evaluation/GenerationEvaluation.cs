using System.Diagnostics;
using VarSharp.Data;
using VarSharp.Sampling;
using static TorchSharp.torch;

namespace VarSharp.Evaluation;

/// <summary>What <see cref="GenerationEvaluation"/> generates and how.</summary>
public sealed record GenerationEvalOptions
{
    /// <summary>Guidance scales to evaluate, each a separate run over the same seeds.</summary>
    public IReadOnlyList<double> Cfgs { get; init; } = [1.0, 2.0, 4.0];

    /// <summary>Images generated per class and per cfg (and real test images per class in the reference sets).</summary>
    public int PerClass { get; init; } = 100;

    /// <summary>Top-k as in <see cref="SampleOptions.TopK"/> (null: the demo's share of the codebook).</summary>
    public int? TopK { get; init; }

    public double TopP { get; init; } = 0.95;

    /// <summary>Image i of every cfg run uses the generator seeded Seed + i, so runs differ only in the guidance.</summary>
    public long Seed { get; init; }

    public int BatchSize { get; init; } = 16;

    /// <summary>Neighbourhood size of the improved precision/recall.</summary>
    public int K { get; init; } = 3;
}

/// <summary>The metrics of one set of images (generated at one cfg, or real held-out images).</summary>
/// <param name="Cfg">The guidance scale, or null for the real-image baseline.</param>
/// <param name="Images">Images scored (per class × classes).</param>
/// <param name="ClassConsistency">Share of images the classifier assigns to the class they were generated for (for real images: its accuracy).</param>
/// <param name="ConsistencyPerClass">The same per requested class.</param>
/// <param name="FrechetDistance">Fréchet distance between Gaussians fitted to the classifier features of these images and of the FD reference set.</param>
/// <param name="Precision">Share of these images inside the k-NN manifold of the precision/recall reference set.</param>
/// <param name="Recall">Share of the reference images inside the k-NN manifold of these images.</param>
/// <param name="ImagesPerSecond">Generation speed (tokenizer decoding included; scoring excluded); null for real images.</param>
/// <param name="Seconds">Generation time; null for real images.</param>
public sealed record GenerationSetReport(
    double? Cfg, int Images, double ClassConsistency, double[] ConsistencyPerClass, double FrechetDistance, double Precision, double Recall,
    double? ImagesPerSecond, double? Seconds);

/// <param name="Classes">Classes generated (0 … Classes − 1).</param>
/// <param name="FdReferenceImages">Real test images the Fréchet distance compares with.</param>
/// <param name="PrecisionRecallReferenceImages">Real test images precision/recall compare with (PerClass of each class).</param>
/// <param name="Baseline">Real held-out test images scored like a generated set (null when the test split is too small).</param>
/// <param name="Reconstructed">
/// The baseline's images after a round trip through the model's tokenizer (encode, quantize, decode, 8-bit), scored the
/// same way: the best a generator on this tokenizer can hope for. Null without a baseline or without the test images.
/// </param>
public sealed record GenerationEvalReport(
    int Classes, int PerClass, int FdReferenceImages, int PrecisionRecallReferenceImages, int TopK, double TopP, long Seed,
    GenerationSetReport? Baseline, IReadOnlyList<GenerationSetReport> Runs, GenerationSetReport? Reconstructed = null);

/// <summary>Progress of <see cref="GenerationEvaluation.Evaluate"/>: which cfg, and the sampler's progress within it.</summary>
public readonly record struct GenerationEvalProgress(int CfgIndex, double Cfg, SampleProgress Sampling);

/// <summary>
/// Scores class-conditional generation with the Fashion-MNIST classifier. Reference sets from the test split:
/// <list type="bullet">
/// <item>P/R reference: the first PerClass test images of each generated class;</item>
/// <item>baseline: the next PerClass of each class, scored like a generated set, to show what real images get;</item>
/// <item>FD reference: every test image of the generated classes except the baseline's.</item>
/// </list>
/// </summary>
public static class GenerationEvaluation
{
    /// <summary>Throws a one-sentence <see cref="VarSharpException"/> when the pipeline, classifier and options do not fit together.</summary>
    public static void Check(VarPipeline pipe, FashionClassifier classifier, GenerationEvalOptions options)
    {
        ArgumentNullException.ThrowIfNull(pipe);
        ArgumentNullException.ThrowIfNull(classifier);
        ArgumentNullException.ThrowIfNull(options);
        if (pipe.ImageSize != classifier.ImageSize)
            throw new VarSharpException(
                $"The model generates {pipe.ImageSize}×{pipe.ImageSize} images but the classifier takes {classifier.ImageSize}×{classifier.ImageSize}; use a classifier trained at the model's image size.");
        if (pipe.NumClasses > classifier.NumClasses)
            throw new VarSharpException($"The model has {pipe.NumClasses} classes but the classifier knows only {classifier.NumClasses}.");
        if (options.Cfgs.Count == 0) throw new VarSharpException("Give at least one guidance scale to evaluate.");
        if (options.PerClass < 1) throw new VarSharpException($"The images per class must be at least 1 but are {options.PerClass}.");
        long total = (long)options.PerClass * pipe.NumClasses;
        if (total <= options.K)
            throw new VarSharpException(
                $"{options.PerClass} image(s) per class × {pipe.NumClasses} classes = {total} images, but precision/recall with k={options.K} need more than {options.K}.");
        foreach (var cfg in options.Cfgs) pipe.Validate(SampleOptionsFor(pipe, options, cfg));
    }

    /// <summary>
    /// Throws a one-sentence <see cref="VarSharpException"/> when a class id would mean different classes to the model,
    /// the classifier or the test data (an image folder numbers its classes alphabetically, the idx files do not):
    /// class consistency would then compare unrelated classes. Models without class names (numbered "class i") and
    /// classifiers without them are taken as they are.
    /// </summary>
    public static void CheckClassNames(VarPipeline pipe, FashionClassifier classifier, IImageDataset data)
    {
        ArgumentNullException.ThrowIfNull(pipe);
        ArgumentNullException.ThrowIfNull(classifier);
        ArgumentNullException.ThrowIfNull(data);
        if (classifier.Info?.ClassNames is not { Count: > 0 } known) return;
        // Only the model's classes are generated and scored.
        int classes = pipe.NumClasses;
        FirstDifference(data.ClassNames, known, data.Description);
        bool numbered = pipe.ClassNames.Select((n, i) => n == $"class {i}").All(b => b);
        if (!numbered) FirstDifference(pipe.ClassNames, known, "the model");

        void FirstDifference(IReadOnlyList<string> theirs, IReadOnlyList<string> classifiers, string whose)
        {
            for (int i = 0; i < Math.Min(classes, theirs.Count); i++)
            {
                var expected = i < classifiers.Count ? classifiers[i] : "(none)";
                // Class folders named by their number ("0" … "9") say nothing against the classifier's order.
                if (theirs[i].Trim() == i.ToString(System.Globalization.CultureInfo.InvariantCulture)) continue;
                if (!string.Equals(theirs[i].Trim(), expected, StringComparison.OrdinalIgnoreCase))
                    throw new VarSharpException(
                        $"Class {i} is '{theirs[i]}' in {whose} but '{expected}' for the classifier, so class consistency would compare different classes; use data, model and classifier that number their classes alike.");
            }
        }
    }

    /// <param name="testSplit">
    /// The images behind <paramref name="reference"/>, in the same order; when given, the baseline images are also
    /// scored after a round trip through the tokenizer (<see cref="GenerationEvalReport.Reconstructed"/>).
    /// </param>
    public static GenerationEvalReport Evaluate(VarPipeline pipe, FashionClassifier classifier, ReferenceFeatures reference,
        GenerationEvalOptions options, IProgress<GenerationEvalProgress>? progress = null, Action<GenerationSetReport>? onRun = null,
        IImageDataset? testSplit = null)
    {
        Check(pipe, classifier, options);
        ArgumentNullException.ThrowIfNull(reference);
        if (testSplit is not null && testSplit.Count != reference.Count)
            throw new VarSharpException($"{testSplit.Description} has {testSplit.Count} images but the reference features cover {reference.Count}; pass the split they were computed from.");
        if (testSplit is not null) CheckClassNames(pipe, classifier, testSplit);
        int classes = pipe.NumClasses, perClass = options.PerClass;

        // Reference sets, by test-split index.
        var labels = reference.Labels_N.data<long>().ToArray();
        var byClass = Enumerable.Range(0, classes).Select(c => new List<int>()).ToArray();
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] >= 0 && labels[i] < classes) byClass[labels[i]].Add(i);
        for (int c = 0; c < classes; c++)
            if (byClass[c].Count < perClass)
                throw new VarSharpException($"The test split has {byClass[c].Count} image(s) of class {c} but {perClass} per class are needed for the precision/recall reference.");
        bool baseline = byClass.All(l => l.Count >= 2 * perClass);
        var prIdx = byClass.SelectMany(l => l.Take(perClass)).ToArray();
        var baseIdx = baseline ? byClass.SelectMany(l => l.Skip(perClass).Take(perClass)).ToArray() : [];
        var excluded = baseIdx.ToHashSet();
        var fdIdx = byClass.SelectMany(l => l).Where(i => !excluded.Contains(i)).Order().ToArray();
        if (fdIdx.Length < 2) throw new VarSharpException($"The test split has {fdIdx.Length} image(s) of the model's classes; the Fréchet distance needs at least 2.");

        var (fdRef, fdPred, fdLabels) = reference.Select(fdIdx);
        var (prRef, prPred, prLabels) = reference.Select(prIdx);
        // Only the features are used; the predictions and labels that come with them are freed at once.
        foreach (var unused in new[] { fdPred, fdLabels, prPred, prLabels }) unused.Dispose();
        using (fdRef)
        using (prRef)
        {
            GenerationSetReport? baseReport = null, reconReport = null;
            if (baseline)
            {
                var (bf, bp, bl) = reference.Select(baseIdx);
                using (bf)
                using (bp)
                using (bl)
                    baseReport = Score(null, bf, bp, bl, classes, fdRef, prRef, options.K, null);
                onRun?.Invoke(baseReport);
                if (testSplit is not null)
                {
                    reconReport = ScoreReconstructions(pipe, classifier, testSplit, baseIdx, classes, fdRef, prRef, options);
                    onRun?.Invoke(reconReport);
                }
            }

            var runs = new List<GenerationSetReport>();
            for (int ci = 0; ci < options.Cfgs.Count; ci++)
            {
                double cfg = options.Cfgs[ci];
                var sampleOptions = SampleOptionsFor(pipe, options, cfg);
                int cfgIndex = ci;
                var clock = Stopwatch.StartNew();
                var images = pipe.Generate(sampleOptions, progress is null ? null : new InlineProgress<SampleProgress>(p =>
                    progress.Report(new GenerationEvalProgress(cfgIndex, cfg, p))));
                double seconds = clock.Elapsed.TotalSeconds;
                using var scope = NewDisposeScope();
                var batch = stack(images.Select(im => ImageIO.FromPixels(im.Pixels, im.Channels, im.Height, im.Width)).ToArray(), 0);
                var requested = tensor(images.Select(im => (long)im.Class).ToArray());
                var (features, predictions) = classifier.Embed(batch);
                var report = Score(cfg, features, predictions, requested, classes, fdRef, prRef, options.K, seconds);
                runs.Add(report);
                onRun?.Invoke(report);
            }
            return new GenerationEvalReport(classes, perClass, fdIdx.Length, prIdx.Length, SampleOptionsFor(pipe, options, 0).ResolveTopK(pipe.VocabSize),
                options.TopP, options.Seed, baseReport, runs, reconReport);
        }
    }

    private static GenerationSetReport ScoreReconstructions(VarPipeline pipe, FashionClassifier classifier, IImageDataset testSplit,
        int[] indices, int classes, Tensor fdRef, Tensor prRef, GenerationEvalOptions options)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var (images, labels) = DatasetTensors.Load(testSplit, indices);
        var device = pipe.Model.Device;
        var parts = new List<Tensor>();
        for (long s = 0; s < images.shape[0]; s += options.BatchSize)
        {
            var batch = images.narrow(0, s, Math.Min(options.BatchSize, images.shape[0] - s)).to(device);
            // Grey test images meet an RGB tokenizer as three equal channels, as the data loader feeds them in training.
            int want = pipe.Tokenizer.Config.InChannels;
            if (batch.shape[1] != want) batch = want == 3 ? batch.expand(-1, 3, -1, -1) : batch.mean([1L], keepdim: true);
            // The same 8-bit rounding generated images go through, so the two rows differ only in where the tokens came from.
            var recon = pipe.Tokenizer.Reconstruct(batch).cpu();
            parts.Add(ImageIO.As8Bit(recon));
        }
        var (features, predictions) = classifier.Embed(cat(parts, 0));
        return Score(null, features, predictions, labels, classes, fdRef, prRef, options.K, null);
    }

    private static SampleOptions SampleOptionsFor(VarPipeline pipe, GenerationEvalOptions options, double cfg) => new()
    {
        Classes = Enumerable.Range(0, pipe.NumClasses).ToArray(),
        Count = options.PerClass,
        Cfg = cfg,
        TopK = options.TopK,
        TopP = options.TopP,
        Seed = options.Seed,
        BatchSize = options.BatchSize,
        PerSampleSeeds = true,
    };

    private static GenerationSetReport Score(double? cfg, Tensor features_ND, Tensor predictions_N, Tensor requested_N, int classes,
        Tensor fdRef, Tensor prRef, int k, double? seconds)
    {
        using var scope = NewDisposeScope();
        var hit = predictions_N.eq(requested_N).to(float64);
        double consistency = hit.mean().item<double>();
        var perClass = new double[classes];
        for (int c = 0; c < classes; c++)
        {
            var mask = requested_N.eq(c);
            long count = mask.sum().item<long>();
            perClass[c] = count == 0 ? double.NaN : hit.masked_select(mask).mean().item<double>();
        }
        double fd = FrechetDistance.Compute(features_ND, fdRef);
        var (precision, recall) = PrecisionRecall.Compute(prRef, features_ND, k);
        int n = (int)features_ND.shape[0];
        return new GenerationSetReport(cfg, n, consistency, perClass, fd, precision, recall,
            seconds is { } s ? n / Math.Max(s, 1e-9) : null, seconds);
    }

    private sealed class InlineProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
