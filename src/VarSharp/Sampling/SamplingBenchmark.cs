using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace VarSharp.Sampling;

/// <summary>What <see cref="SamplingBenchmark"/> measures and how often.</summary>
public sealed record BenchmarkOptions
{
    /// <summary>Batch sizes whose sampling throughput is compared (the first is the baseline of the ratios).</summary>
    public int[] BatchSizes { get; init; } = [1, 8, 32];

    /// <summary>Images sampled per measurement (in batches of each size).</summary>
    public int Images { get; init; } = 32;

    /// <summary>Measurements per figure; the median is reported.</summary>
    public int Repeats { get; init; } = 3;

    /// <summary>Batch of the KV-cache-against-recompute comparison.</summary>
    public int CompareBatch { get; init; } = 8;

    /// <summary>Batch of the tokenizer's encode and decode measurements.</summary>
    public int TokenizerBatch { get; init; } = 32;

    public required SamplerSettings Settings { get; init; }

    public BenchmarkOptions Validate()
    {
        if (BatchSizes.Length == 0 || BatchSizes.Any(b => b < 1))
            throw new VarSharpException($"batch sizes must be positive, found [{string.Join(", ", BatchSizes)}].");
        if (Images < BatchSizes.Max())
            throw new VarSharpException($"each measurement samples {Images} images, fewer than the largest batch size {BatchSizes.Max()}; give at least that many.");
        if (Repeats < 1) throw new VarSharpException($"the number of repeats must be positive, found {Repeats}.");
        if (CompareBatch < 1 || TokenizerBatch < 1)
            throw new VarSharpException($"the comparison and tokenizer batches must be positive, found {CompareBatch} and {TokenizerBatch}.");
        return this;
    }
}

/// <summary>Sampling throughput at one batch size (KV cache), and its speed-up over the first batch size measured.</summary>
public sealed record BatchRate(int BatchSize, double ImagesPerSecond, double SpeedUp);

/// <summary>
/// One run's figures. The KV-cache comparison samples the same batch with the same generator both ways:
/// <see cref="MaxLogitDifference"/> is the largest |Δ| between the two paths' raw logits and <see cref="SameTokens"/>
/// whether every token drawn was the same.
/// </summary>
public sealed record SamplingBenchmarkResult(
    int Threads,
    SamplerSettings Settings,
    IReadOnlyList<BatchRate> Batches,
    int CompareBatch,
    double CachedSeconds,
    double RecomputeSeconds,
    double MaxLogitDifference,
    bool SameTokens,
    int TokenizerBatch,
    double EncodeImagesPerSecond,
    double DecodeImagesPerSecond,
    int SamplingsForMemory,
    long RssAfterWarmUp,
    long RssAfter,
    long LiveTensorsAfterWarmUp,
    long LiveTensorsAfter)
{
    /// <summary>How many times faster the KV-cached sampler is than recomputing every position at every scale.</summary>
    public double CacheSpeedUp => RecomputeSeconds / CachedSeconds;
}

/// <summary>
/// Speed and memory of sampling with one model, measured in one process so that the ratios compare like with like:
/// throughput per batch size, the KV cache against recomputing (the cache is what keeps sampling linear in the number of
/// scales instead of quadratic), the tokenizer's encode and decode rates, and resident memory and live tensors before
/// and after every sampling the run did. Wall-clock figures depend on the machine and its load; the ratios much less.
/// </summary>
public static class SamplingBenchmark
{
    public static SamplingBenchmarkResult Run(VarPipeline pipeline, BenchmarkOptions options, Action<string>? say = null)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        options.Validate();
        var settings = options.Settings.Validate(pipeline.Model.Config);
        var cached = pipeline.Sampler;
        var recompute = new VarSampler(cached.Model, cached.Tokenizer) { UseKvCache = false };
        int samplings = 0;
        int[] Classes(int n) => Enumerable.Range(0, n).Select(i => i % pipeline.NumClasses).ToArray();
        void Sample(VarSampler sampler, int n, long seed)
        {
            using var r = sampler.Sample(Classes(n), settings, SampleRng.PerSampleFrom(seed, n));
            samplings++;
        }

        // The warm-up runs every workload once, so that allocator pools and JIT are settled before memory is measured.
        say?.Invoke("warming up");
        foreach (var b in options.BatchSizes.Append(options.CompareBatch).Distinct()) Sample(cached, b, 0);
        Sample(recompute, options.CompareBatch, 0);
        TimeTokenizer(cached, settings, options, 1, Classes(options.TokenizerBatch));
        var (rss0, live0) = Memory();
        int samplingsBefore = samplings;

        var rates = new List<BatchRate>();
        foreach (var b in options.BatchSizes)
        {
            say?.Invoke($"sampling {options.Images} images in batches of {b}");
            double seconds = Median(options.Repeats, r =>
            {
                for (int done = 0; done < options.Images; done += b) Sample(cached, Math.Min(b, options.Images - done), 1000L * r + done);
            });
            double rate = options.Images / seconds;
            rates.Add(new BatchRate(b, rate, rates.Count == 0 ? 1 : rate / rates[0].ImagesPerSecond));
        }

        say?.Invoke($"KV cache against recomputing, batch {options.CompareBatch}");
        int n = options.CompareBatch;
        double cachedSeconds = Median(options.Repeats, r => Sample(cached, n, 7 + r));
        double recomputeSeconds = Median(options.Repeats, r => Sample(recompute, n, 7 + r));
        double maxDiff;
        bool sameTokens;
        using (var a = cached.Sample(Classes(n), settings, SampleRng.Shared(11), SampleExtras.Logits))
        using (var c = recompute.Sample(Classes(n), settings, SampleRng.Shared(11), SampleExtras.Logits))
        using (var scope = NewDisposeScope())
        {
            maxDiff = a.LogitsRaw!.sub(c.LogitsRaw!).abs().max().item<float>();
            sameTokens = a.TokensBL().eq(c.TokensBL()).all().item<bool>();
            samplings += 2;
        }

        say?.Invoke($"tokenizer encode and decode, batch {options.TokenizerBatch}");
        var (encodeSeconds, decodeSeconds) = TimeTokenizer(cached, settings, options, options.Repeats, Classes(options.TokenizerBatch));
        samplings++;

        var (rss1, live1) = Memory();
        return new SamplingBenchmarkResult(get_num_threads(), options.Settings, rates, n, cachedSeconds, recomputeSeconds, maxDiff, sameTokens,
            options.TokenizerBatch, options.TokenizerBatch / encodeSeconds, options.TokenizerBatch / decodeSeconds,
            samplings - samplingsBefore, rss0, rss1, live0, live1);
    }

    /// <summary>
    /// Sampling throughput of two pipelines of the same model (float32 and half precision, say) at one batch size,
    /// measured alternately after a warm-up of each, so that both see the same machine: (first, second) images/s.
    /// </summary>
    public static (double First, double Second) CompareRates(VarPipeline first, VarPipeline second, BenchmarkOptions options, int batchSize)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        var settings = options.Settings.Validate(first.Model.Config);
        int[] classes = Enumerable.Range(0, batchSize).Select(i => i % first.NumClasses).ToArray();
        void Once(VarPipeline p, long seed)
        {
            using var r = p.Sampler.Sample(classes, settings, SampleRng.PerSampleFrom(seed, batchSize));
        }
        Once(first, 0);
        Once(second, 0);
        int batches = Math.Max(1, options.Images / batchSize);
        var a = new double[options.Repeats];
        var b = new double[options.Repeats];
        for (int r = 0; r < options.Repeats; r++)
        {
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < batches; i++) Once(first, 100L * r + i);
            a[r] = clock.Elapsed.TotalSeconds;
            clock.Restart();
            for (int i = 0; i < batches; i++) Once(second, 100L * r + i);
            b[r] = clock.Elapsed.TotalSeconds;
        }
        Array.Sort(a);
        Array.Sort(b);
        double images = (double)batches * batchSize;
        return (images / a[options.Repeats / 2], images / b[options.Repeats / 2]);
    }

    /// <summary>Median seconds to encode (image → token pyramid) and decode (pyramid → image) one batch of sampled images.</summary>
    private static (double Encode, double Decode) TimeTokenizer(VarSampler sampler, SamplerSettings settings, BenchmarkOptions options, int repeats, int[] classes)
    {
        using var images = sampler.Sample(classes, settings, SampleRng.Shared(5));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var vae = sampler.Tokenizer;
        var x = images.Images.narrow(1, 0, vae.Config.InChannels).mul(2).sub(1);
        List<Tensor>? tokens = null;
        double encode = Median(repeats, _ =>
        {
            if (tokens is not null) foreach (var t in tokens) t.Dispose();
            tokens = vae.ImageToIndices(x);
            Finish(tokens[^1]);
        });
        double decode = Median(repeats, _ =>
        {
            using var image = vae.IndicesToImage(tokens!);
            Finish(image);
        });
        return (encode, decode);
    }

    /// <summary>
    /// Waits until <paramref name="result"/> is computed: accelerators run kernels asynchronously, so without this a
    /// timing would measure their launch. Copying one element to the host waits for the work before it; CPU work is
    /// already done when the call returns.
    /// </summary>
    private static void Finish(Tensor result)
    {
        if (result.device_type == DeviceType.CPU) return;
        using var first = result.flatten()[0];
        using var onHost = first.cpu();
    }

    internal static double Median(int repeats, Action<int> once)
    {
        var seconds = new double[repeats];
        for (int r = 0; r < repeats; r++)
        {
            var clock = Stopwatch.StartNew();
            once(r);
            seconds[r] = clock.Elapsed.TotalSeconds;
        }
        Array.Sort(seconds);
        return repeats % 2 == 1 ? seconds[repeats / 2] : (seconds[repeats / 2 - 1] + seconds[repeats / 2]) / 2;
    }

    private static (long Rss, long LiveTensors) Memory()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        using var self = Process.GetCurrentProcess();
        return (self.WorkingSet64, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }
}
