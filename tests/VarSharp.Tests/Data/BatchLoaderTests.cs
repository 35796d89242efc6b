using VarSharp.Data;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Data;

public class BatchLoaderTests
{
    [Fact]
    public void EpochOrderIsAPurePermutation()
    {
        var a = EpochOrder.Permutation(5, 3, 1000);
        Assert.Equal(a, EpochOrder.Permutation(5, 3, 1000));
        Assert.Equal(Enumerable.Range(0, 1000), a.Order());
        Assert.NotEqual(a, EpochOrder.Permutation(5, 4, 1000));
        Assert.NotEqual(a, EpochOrder.Permutation(6, 3, 1000));
        Assert.NotEqual(Enumerable.Range(0, 1000), a);
    }

    [Fact]
    public void PrefetchedBatchesEqualDirectOnesAndResumeAnywhere()
    {
        using var tmp = new TempFolder();
        var set = FashionMnist.Load(TinyData.WriteIdxFolder(tmp.File("d"), train: 10, test: 2), DataSplit.Train, 3, 8, hflip: true);
        List<Batch> Take(int prefetch, DataPosition start, int n)
        {
            using var loader = new BatchLoader(set, 3, seed: 9, start, prefetch);
            return Enumerable.Range(0, n).Select(_ => loader.Next()).ToList();
        }
        var sync = Take(0, new DataPosition(0, 0), 8);
        var pre = Take(2, new DataPosition(0, 0), 8);
        Assert.Equal(sync.Select(b => b.Position), pre.Select(b => b.Position));
        // 3 batches of 3 per epoch (the 10th image is dropped), so batch 8 is (epoch 2, batch 1).
        Assert.Equal(new DataPosition(2, 1), sync[^1].Position);
        for (int i = 0; i < sync.Count; i++)
        {
            Assert.Equal(sync[i].Pixels, pre[i].Pixels);
            Assert.Equal(sync[i].Labels, pre[i].Labels);
        }
        var resumed = Take(2, new DataPosition(1, 2), 3);
        for (int i = 0; i < 3; i++) Assert.Equal(sync[5 + i].Pixels, resumed[i].Pixels);
        // Each epoch visits every kept image once, in a new order.
        var labelsEpoch0 = sync.Take(3).SelectMany(b => b.Labels).ToList();
        var labelsEpoch1 = sync.Skip(3).Take(3).SelectMany(b => b.Labels).ToList();
        Assert.NotEqual(labelsEpoch0, labelsEpoch1);
    }

    [Fact]
    public void TooFewImagesOrBadPositionsAreClearErrors()
    {
        using var tmp = new TempFolder();
        var set = FashionMnist.Load(TinyData.WriteIdxFolder(tmp.File("d"), train: 4, test: 2), DataSplit.Train, 1, 8);
        Assert.Contains("fewer than one batch", Assert.Throws<VarSharpException>(() => new BatchLoader(set, 5, 0, default)).Message);
        Assert.Contains("outside", Assert.Throws<VarSharpException>(() => new BatchLoader(set, 2, 0, new DataPosition(0, 2))).Message);
    }

    /// <summary>A failure inside the prefetch worker reaches the caller as itself, exactly as without prefetch.</summary>
    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    public void AWorkersFailureArrivesWithItsOwnType(int prefetch)
    {
        using var tmp = new TempFolder();
        var set = new Failing(FashionMnist.Load(TinyData.WriteIdxFolder(tmp.File("d"), train: 8, test: 2), DataSplit.Train, 1, 8));
        using var loader = new BatchLoader(set, 2, seed: 1, default, prefetch);
        var e = Assert.Throws<IOException>(() => { for (int i = 0; i < 10; i++) loader.Next(); });
        Assert.Equal("the disk went away", e.Message);
    }

    /// <summary>A dataset whose third read fails, as a disk can.</summary>
    private sealed class Failing(IImageDataset inner) : IImageDataset
    {
        private int reads;
        public string Description => inner.Description;
        public int Count => inner.Count;
        public int Channels => inner.Channels;
        public int ImageSize => inner.ImageSize;
        public IReadOnlyList<string> ClassNames => inner.ClassNames;
        public DataIssues Issues => inner.Issues;
        public string Fingerprint => inner.Fingerprint;
        public int Label(int index) => inner.Label(index);

        public void Fill(int index, ulong? augmentKey, Span<float> destination)
        {
            if (Interlocked.Increment(ref reads) == 3) throw new IOException("the disk went away");
            inner.Fill(index, augmentKey, destination);
        }
    }
}
