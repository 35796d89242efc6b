using System.Diagnostics;
using TorchSharp;
using VarSharp.Tests.Support;
using VarSharp.Tokenizer;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace VarSharp.Tests.Tokenizer;

[CollectionDefinition("memory", DisableParallelization = true)]
public class MemoryCollection;

/// <summary>200 encode/decode batches in one process must neither leak tensors nor grow resident memory.</summary>
[Collection("memory")]
public class VqVaeMemoryTests(ITestOutputHelper output)
{
    [Fact]
    public void TwoHundredEncodeDecodeBatchesDoNotGrowMemory()
    {
        manual_seed(11);
        using var vae = new VqVae(TinyConfigs.VqVae());
        using var x = rand(4, 3, vae.Config.ImageSize, vae.Config.ImageSize).mul(2).sub(1);
        void Batch()
        {
            using var noGrad = no_grad();
            var idx = vae.ImageToIndices(x);
            using var img = vae.IndicesToImage(idx);
            using var rec = vae.Reconstruct(x);
            foreach (var t in idx) t.Dispose();
        }
        for (int i = 0; i < 20; i++) Batch(); // warm-up: allocator pools, JIT
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var live0 = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var rss0 = Process.GetCurrentProcess().WorkingSet64;
        for (int i = 0; i < 200; i++) Batch();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var live1 = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var rss1 = Process.GetCurrentProcess().WorkingSet64;
        output.WriteLine($"live tensors {live0} -> {live1}; RSS {rss0 / 1e6:0.0} MB -> {rss1 / 1e6:0.0} MB");
        Assert.Equal(live0, live1);
        Assert.True(rss1 - rss0 < 64L << 20, $"resident memory grew by {(rss1 - rss0) / 1e6:0.0} MB over 200 batches");
    }
}
