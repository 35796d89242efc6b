using TorchSharp;
using VarSharp.Evaluation;
using static TorchSharp.torch;

namespace VarSharp.Tests.Evaluation;

public class MetricTests
{
    [Fact]
    public void FrechetDistanceMatchesTheClosedFormForDiagonalGaussians()
    {
        // Two large samples of N(μ, diag(σ²)): FD → |μ1−μ2|² + Σ(σ1 − σ2)².
        var g = new Generator(5);
        using var a = randn([20000, 3], generator: g, dtype: float64).mul(tensor(new[] { 1.0, 2.0, 0.5 }, dtype: float64));
        using var b = randn([20000, 3], generator: g, dtype: float64).mul(tensor(new[] { 2.0, 1.0, 0.5 }, dtype: float64)).add(tensor(new[] { 1.0, 0.0, -1.0 }, dtype: float64));
        double expected = (1 + 0 + 1) + (1 + 1 + 0);
        double fd = FrechetDistance.Compute(a, b);
        Assert.InRange(fd, expected - 0.1, expected + 0.1);
    }

    [Fact]
    public void FrechetDistanceOfASetWithItselfIsZero()
    {
        var g = new Generator(6);
        using var a = randn([500, 8], generator: g);
        Assert.InRange(FrechetDistance.Compute(a, a), -1e-6, 1e-6);
    }

    [Fact]
    public void ReconstructionScoresAreZeroForAPerfectRoundTripAndGrowWithDamage()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(7);
        using var classifier = new FashionClassifier(imageSize: 8);
        classifier.InitWeights(g);
        var images = rand([64, 1, 8, 8], generator: g).mul_(2).sub_(1);
        var labels = randint(0, 10, [64], generator: g);
        List<Tensor> Chunks(Tensor t) => [t[..32].clone(), t[32..].clone()];

        var perfect = TokenizerEvaluation.Score(classifier, Chunks(images), Chunks(images), labels);
        Assert.InRange(perfect.FrechetDistance, -1e-4, 1e-4);
        Assert.Equal(perfect.AccuracyOriginal, perfect.AccuracyReconstructed);

        // A random classifier's features barely move with mild noise, so the damage is gross: the negative image.
        var damaged = TokenizerEvaluation.Score(classifier, Chunks(images), Chunks(images.neg()), labels);
        Assert.True(damaged.FrechetDistance > 1000 * Math.Max(Math.Abs(perfect.FrechetDistance), 1e-9),
            $"rFD of negated images {damaged.FrechetDistance} vs {perfect.FrechetDistance} for identical ones");
        Assert.Null(TokenizerEvaluation.Score(classifier, Chunks(images), Chunks(images), labels_N: null).AccuracyOriginal);
    }

    [Fact]
    public void PrecisionAndRecallSeparateFidelityFromDiversity()
    {
        var g = new Generator(7);
        using var real = randn([400, 2], generator: g);
        var same = PrecisionRecall.Compute(real, real.clone());
        Assert.Equal(1.0, same.Precision, 6);
        Assert.Equal(1.0, same.Recall, 6);
        // Generated samples collapsed onto a small part of the real distribution: precise but not diverse.
        using var collapsed = randn([400, 2], generator: g).mul(0.05).add(0.5);
        var (p, r) = PrecisionRecall.Compute(real, collapsed);
        Assert.True(p > 0.9, $"precision {p}");
        Assert.True(r < 0.2, $"recall {r}");
        // Far away: neither.
        using var far = randn([400, 2], generator: g).add(50);
        var farPr = PrecisionRecall.Compute(real, far);
        Assert.Equal(0.0, farPr.Precision);
        Assert.Equal(0.0, farPr.Recall);
    }

    /// <summary>Sets larger than one distance block give what the whole distance matrices give.</summary>
    [Fact]
    public void PrecisionAndRecallInBlocksEqualTheWholeMatrixComputation()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(11);
        var real = randn([2500, 3], dtype: ScalarType.Float64, generator: g);
        var gen = randn([2100, 3], dtype: ScalarType.Float64, generator: g).mul(0.8).add(0.3);
        const int k = 3;
        Tensor Radii(Tensor x) => cdist(x, x).topk(k + 1, dim: 1, largest: false).values[.., k];
        double Share(Tensor q, Tensor r, Tensor radii) => cdist(q, r).le(radii.unsqueeze(0)).any(1).to(ScalarType.Float64).mean().item<double>();
        double precision = Share(gen, real, Radii(real)), recall = Share(real, gen, Radii(gen));
        var (p, r) = PrecisionRecall.Compute(real, gen, k);
        Assert.Equal(precision, p, 12);
        Assert.Equal(recall, r, 12);
        Assert.InRange(p, 0.05, 0.999);   // a case where both sides of every comparison occur
        Assert.InRange(r, 0.05, 0.999);
    }
}

public class FashionClassifierTests
{
    [Fact]
    public void FreshClassifierIsFiniteAndShapesAreRight()
    {
        for (int i = 0; i < 3; i++)
        {
            using var model = new FashionClassifier();
            foreach (var (name, p) in model.named_parameters())
            {
                Assert.False(p.isnan().any().item<bool>(), $"{name} has NaN");
                Assert.True(p.abs().max().item<float>() < 1.0f, $"{name} is not a default init");
            }
            using var x = zeros(2, 3, 32, 32);
            using var logits = model.call(x);
            Assert.Equal(new long[] { 2, 10 }, logits.shape);
            Assert.Throws<VarSharpException>(() => model.Features(zeros(2, 1, 28, 28)));
        }
    }
}

public class ClassifierTrainerTests
{
    private static (Tensor X, Tensor Y) Toy(int n, int seed)
    {
        // Class 0: a bright square on the left; class 1: on the right; light noise.
        var g = new Generator((ulong)seed);
        var x = full([n, 1, 32, 32], -1f);
        var y = randint(0, 2, [n], generator: g);
        for (int i = 0; i < n; i++)
        {
            long c = y[i].item<long>();
            x[i, 0, TensorIndex.Slice(8, 24), c == 0 ? TensorIndex.Slice(2, 14) : TensorIndex.Slice(18, 30)] = tensor(1f);
        }
        x.add_(randn(x.shape, generator: g).mul(0.1));
        return (x, y);
    }

    [Fact]
    public void LearnsAToyTaskAndIsReproducible()
    {
        var (x, y) = Toy(128, 1);
        var options = new VarSharp.Training.ClassifierTrainOptions { Epochs = 2, BatchSize = 32, Seed = 9 };
        using var a = VarSharp.Training.ClassifierTrainer.Train(x, y, options);
        using var b = VarSharp.Training.ClassifierTrainer.Train(x, y, options);
        var (tx, ty) = Toy(64, 2);
        Assert.True(VarSharp.Training.ClassifierTrainer.Accuracy(a, tx, ty) > 0.95);
        foreach (var ((name, pa), (_, pb)) in a.named_parameters().Zip(b.named_parameters()))
            Assert.True(pa.eq(pb).all().item<bool>(), $"{name} differs between two runs with the same seed");
    }
}
