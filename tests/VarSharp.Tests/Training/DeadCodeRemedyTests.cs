using VarSharp.Tests.Support;
using VarSharp.Tokenizer;
using VarSharp.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace VarSharp.Tests.Training;

public class DeadCodeRemedyTests(ITestOutputHelper output)
{
    /// <summary>Distinct codes hit at each scale when quantizing <paramref name="f"/>.</summary>
    private static int[] DistinctPerScale(VqVae vae, Tensor f)
    {
        using var q = vae.Quantizer.Quantize(f, keepFhats: false, keepDiagnostics: false);
        return q.Indices.Select(i => (int)i.unique().Item1.numel()).ToArray();
    }

    [Fact]
    public void RevivesCodesOfACollapsedCodebook()
    {
        using var vae = new VqVae(TinyConfigs.VqVae());
        using var g = new Generator(3);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var images = rand([16, 3, 8, 8], generator: g).mul(2).sub(1);
        var f = vae.Encode(images);
        // Collapse: code 0 at the origin, every other code far away, so every token of every scale picks code 0.
        var book = vae.Quantizer.Codebook.weight!;
        book.fill_(1000f);
        book[0].zero_();
        var before = DistinctPerScale(vae, f);
        Assert.All(before, n => Assert.Equal(1, n));
        // Hits as TrainForward would record them: all on code 0.
        using (enable_grad()) vae.Quantizer.TrainForward(f).hits_SV.Dispose();
        long batch = images.shape[0];
        double margin = DeadCodeRemedy.Margin(vae, batch, 0.08);
        Assert.Equal(vae.Config.VocabSize - 1, DeadCodeRemedy.DeadCodes(vae.Quantizer, margin).Length);

        using var q = vae.Quantizer.Quantize(f, keepFhats: false, keepDiagnostics: true);
        var report = DeadCodeRemedy.Apply(vae.Quantizer, q.SearchedResiduals, margin, g);
        var after = DistinctPerScale(vae, f);
        output.WriteLine($"distinct codes per scale before {string.Join(",", before)}, after {string.Join(",", after)}; revived per scale {string.Join(",", report.RevivedPerScale)}");

        Assert.Equal(vae.Config.VocabSize - 1, report.Dead);
        Assert.Equal(report.Dead, report.Revived);
        Assert.DoesNotContain(0L, report.Rows);
        Assert.All(report.RevivedPerScale, n => Assert.True(n > 0));
        // The coarsest scales no longer collapse onto one code.
        Assert.True(after[0] > 1 && after[1] > 1, $"scales 1x1 and 2x2 still collapsed: {string.Join(",", after)}");
        Assert.True(after.Sum() > 3 * before.Sum());
    }

    [Fact]
    public void SameGeneratorStateGivesTheSameRevival()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long[] Run()
        {
            using var vae = new VqVae(TinyConfigs.VqVae());
            using (var init = new Generator(5)) TokenizerInit.Initialize(vae, init);
            var book = vae.Quantizer.Codebook.weight!;
            book.fill_(1000f);
            book[0].zero_();
            using var g = new Generator(11);
            var f = rand([4, vae.Config.ZChannels, 4, 4], generator: g);
            using var q = vae.Quantizer.Quantize(f, keepFhats: false, keepDiagnostics: true);
            var r = DeadCodeRemedy.Apply(vae.Quantizer, q.SearchedResiduals, 0.5, g);
            return r.Rows.Concat(book.sum(1).mul(1000).to(int64).data<long>().ToArray()).ToArray();
        }
        Assert.Equal(Run(), Run());
    }
}
