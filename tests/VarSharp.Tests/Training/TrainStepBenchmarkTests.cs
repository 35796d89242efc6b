using VarSharp.Sampling;
using VarSharp.Tests.Support;
using VarSharp.Training;
using static TorchSharp.torch;

namespace VarSharp.Tests.Training;

public sealed class TrainStepBenchmarkTests
{
    [Fact]
    public void TrainsACopyAndLeavesTheLoadedWeightsAlone()
    {
        var (vae, var) = TinyModels.Create();
        using var pipe = new VarPipeline(vae, var, ownsModels: true);
        var before = var.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        try
        {
            var rate = TrainStepBenchmark.Run(pipe, batch: 3, steps: 2, repeats: 1);
            Assert.Equal(3, rate.BatchSize);
            Assert.True(rate.StepsPerSecond > 0 && double.IsFinite(rate.StepsPerSecond));
            foreach (var (name, value) in var.state_dict())
                Assert.True(value.eq(before[name]).all().item<bool>(), $"{name} changed");
        }
        finally
        {
            foreach (var t in before.Values) t.Dispose();
        }
    }

    [Fact]
    public void NonPositiveSizesAreRefused()
    {
        var (vae, var) = TinyModels.Create();
        using var pipe = new VarPipeline(vae, var, ownsModels: true);
        var e = Assert.Throws<VarSharpException>(() => TrainStepBenchmark.Run(pipe, batch: 0, steps: 1, repeats: 1));
        Assert.Equal("the training batch, steps and repeats must be positive, found 0, 1 and 1.", e.Message);
    }
}
