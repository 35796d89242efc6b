using TorchSharp;
using VarSharp.Sampling;
using static TorchSharp.torch;

namespace VarSharp.Tests.Sampling;

/// <summary>Top-k / top-p exactly as sample_with_top_k_top_p_: in place, ties at the k-th value survive, top-p keeps the largest.</summary>
public class LogitFiltersTests
{
    private static float[] Row(Tensor t) => t.reshape(-1).data<float>().ToArray();

    private static readonly float Ninf = float.NegativeInfinity;

    [Fact]
    public void TopKKeepsEveryValueTiedWithTheKth()
    {
        using var logits = tensor(new float[] { 1, 2, 2, 2, 0 }).reshape(1, 1, 5);
        LogitFilters.TopK_(logits, 2);
        Assert.Equal(new[] { Ninf, 2, 2, 2, Ninf }, Row(logits));
    }

    [Fact]
    public void TopKWorksRowByRowAndInPlace()
    {
        using var logits = tensor(new float[] { 5, 1, 3, 4, /**/ 0, 9, 8, 7 }).reshape(1, 2, 4);
        var same = LogitFilters.TopK_(logits, 2);
        Assert.Same(logits, same);
        Assert.Equal(new[] { 5, Ninf, Ninf, 4, Ninf, 9, 8, Ninf }, Row(logits));
    }

    [Fact]
    public void TopKZeroOrVIsTheIdentity()
    {
        using var logits = tensor(new float[] { 3, 1, 2 }).reshape(1, 1, 3);
        LogitFilters.TopK_(logits, 0);
        LogitFilters.TopK_(logits, 3);
        Assert.Equal(new float[] { 3, 1, 2 }, Row(logits));
    }

    [Theory]
    [InlineData(4, "at most the vocabulary size 3")]
    [InlineData(-1, "found -1")]
    public void TopKOutOfRangeIsAClearError(int k, string expected)
    {
        using var logits = zeros(1, 1, 3);
        var e = Assert.Throws<VarSharpException>(() => LogitFilters.TopK_(logits, k));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void TopPRemovesTheTailAndKeepsTheLargest()
    {
        // probabilities 0.5, 0.3, 0.2: ascending cumsum 0.2, 0.5, 1.0.
        using var logits = tensor(new[] { 0.5f, 0.3f, 0.2f }).log().reshape(1, 1, 3);
        using (var a = LogitFilters.TopKTopP(logits, 0, 0.75))   // remove cumsum ≤ 0.25 → only 0.2
            Assert.Equal(new[] { false, false, true }, Row(a).Select(float.IsNegativeInfinity));
        using (var b = LogitFilters.TopKTopP(logits, 0, 0.4))    // remove cumsum ≤ 0.6 → 0.2 and 0.3
            Assert.Equal(new[] { false, true, true }, Row(b).Select(float.IsNegativeInfinity));
        using (var c = LogitFilters.TopKTopP(logits, 0, 1e-9))   // everything but the largest
            Assert.Equal(new[] { false, true, true }, Row(c).Select(float.IsNegativeInfinity));
        using (var d = LogitFilters.TopKTopP(logits, 0, 1.0))    // nothing
            Assert.DoesNotContain(Row(d), float.IsNegativeInfinity);
        Assert.DoesNotContain(Row(logits), float.IsNegativeInfinity);   // the copying form leaves its input alone
    }

    [Fact]
    public void TopPZeroIsOffAndTopPInPlaceModifiesItsArgument()
    {
        using var logits = tensor(new[] { 0.5f, 0.3f, 0.2f }).log().reshape(1, 1, 3);
        LogitFilters.TopP_(logits, 0);
        Assert.DoesNotContain(Row(logits), float.IsNegativeInfinity);
        LogitFilters.TopP_(logits, 0.4);
        Assert.Equal(2, Row(logits).Count(float.IsNegativeInfinity));
    }

    [Theory]
    [InlineData(-0.1)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public void TopPOutsideTheUnitIntervalIsAClearError(double p)
    {
        using var logits = zeros(1, 1, 3);
        var e = Assert.Throws<VarSharpException>(() => LogitFilters.TopP_(logits, p));
        Assert.StartsWith("top-p must be in [0, 1]", e.Message);
    }

    [Fact]
    public void TopKOneDrawsTheArgmaxButStillConsumesTheGenerator()
    {
        using var logits = tensor(new float[] { 0, 3, 1, 2, /**/ 4, 0, 1, 2 }).reshape(2, 1, 4);
        LogitFilters.TopK_(logits, 1);
        using var g1 = new Generator(5);
        using var idx = TokenSampling.Multinomial(logits, g1);
        Assert.Equal(new long[] { 1, 0 }, idx.data<long>().ToArray());
        using var g2 = new Generator(5);
        using var fresh = rand(new long[] { 4 }, generator: g2);
        using var after = rand(new long[] { 4 }, generator: g1);
        Assert.NotEqual(fresh.data<float>().ToArray(), after.data<float>().ToArray());
    }

    [Fact]
    public void PerRowGeneratorsGiveEachRowWhatItWouldGetAlone()
    {
        using var gen = new Generator(3);
        using var logits = randn(new long[] { 3, 5, 16 }, generator: gen);
        var rows = new[] { new Generator(10), new Generator(11), new Generator(12) };
        using var batched = TokenSampling.Multinomial(logits, rows);
        foreach (var g in rows) g.Dispose();
        for (int i = 0; i < 3; i++)
        {
            using var alone = new Generator((ulong)(10 + i));
            using var one = TokenSampling.Multinomial(logits.narrow(0, i, 1), alone);
            Assert.Equal(one.data<long>().ToArray(), batched[i].data<long>().ToArray());
        }
    }

    [Fact]
    public void GumbelSoftmaxIsADistributionAndFollowsItsGenerator()
    {
        using var logits = tensor(new float[] { 0, 1, float.NegativeInfinity, 2 }).reshape(1, 1, 4);
        using var g1 = new Generator(4);
        using var g2 = new Generator(4);
        using var a = TokenSampling.GumbelSoftmax(logits, 0.5, g1);
        using var b = TokenSampling.GumbelSoftmax(logits, 0.5, g2);
        Assert.Equal(Row(a), Row(b));
        Assert.Equal(1.0, Row(a).Sum(), 5);
        Assert.Equal(0f, Row(a)[2]);
        using var g3 = new Generator(4);
        using var hard = TokenSampling.GumbelSoftmax(logits, 0.5, g3, hard: true);
        Assert.Equal(1.0, Row(hard).Sum(), 5);
        Assert.Equal(1, Row(hard).Count(v => Math.Abs(v - 1) < 1e-6));
    }
}
