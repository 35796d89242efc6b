using System.Diagnostics;
using TorchSharp;
using VarSharp.Sampling;
using VarSharp.Tests.Support;
using Xunit.Abstractions;

namespace VarSharp.Tests.Sampling;

/// <summary>200 samplings in one process neither leak tensors nor grow resident memory.</summary>
[Collection("memory")]
public class SamplerMemoryTests(ITestOutputHelper output)
{
    [Fact]
    public void TwoHundredSamplingsDoNotGrowMemory()
    {
        var (vae, model) = TinyModels.Create();
        using var _vae = vae;
        using var _model = model;
        var sampler = new VarSampler(model, vae);
        var settings = new SamplerSettings { Cfg = 3, TopK = 8, TopP = 0.9 };
        int i = 0;
        void Once()
        {
            // Alternate the paths: shared / per-sample generators, given / drawn classes, extras, Gumbel smoothing.
            using var r = (i++ % 4) switch
            {
                0 => sampler.Sample([1], settings, SampleRng.Shared(i)),
                1 => sampler.SampleRandomClasses(1, settings with { MoreSmooth = true }, SampleRng.PerSampleFrom(i, 1)),
                2 => sampler.Sample([3, 0], settings, SampleRng.PerSampleFrom(i, 2), SampleExtras.Logits | SampleExtras.ScaleImages),
                _ => sampler.SampleRandomClasses(1, settings, SampleRng.Shared(i), SampleExtras.Logits),
            };
        }
        for (int k = 0; k < 20; k++) Once();   // warm-up: allocator pools, JIT
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long live0 = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        long rss0 = Process.GetCurrentProcess().WorkingSet64;
        var sw = Stopwatch.StartNew();
        for (int k = 0; k < 200; k++) Once();
        sw.Stop();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long live1 = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        long rss1 = Process.GetCurrentProcess().WorkingSet64;
        output.WriteLine($"200 samplings in {sw.Elapsed.TotalSeconds:0.00} s; live tensors {live0} -> {live1}; RSS {rss0 / 1e6:0.0} MB -> {rss1 / 1e6:0.0} MB");
        Assert.Equal(live0, live1);
        Assert.True(rss1 - rss0 < 64L << 20, $"resident memory grew by {(rss1 - rss0) / 1e6:0.0} MB over 200 samplings");
    }
}
