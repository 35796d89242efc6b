using TorchSharp;
using VarSharp.Sampling;
using VarSharp.Transformer;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>Transformer training speed at one batch size: optimisation steps (and images) per second.</summary>
public sealed record TrainStepRate(int BatchSize, int StepsPerMeasurement, double StepsPerSecond, string Precision = "f32")
{
    public double ImagesPerSecond => BatchSize * StepsPerSecond;
}

/// <summary>
/// Times <see cref="VarTrainStep.Step"/> — training forward, loss, backward, clipping, AdamW — on a fresh transformer of
/// the pipeline's configuration (the loaded weights stay untouched), fed seeded random token pyramids of its tokenizer so
/// that data loading is not part of the figure. What the step computes is what the golden training vectors check.
/// </summary>
public static class TrainStepBenchmark
{
    /// <param name="computeDType">float32, or bfloat16 for mixed precision (float32 masters and AdamW).</param>
    public static TrainStepRate Run(VarPipeline pipeline, int batch, int steps, int repeats, ScalarType computeDType = ScalarType.Float32)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        if (batch < 1 || steps < 1 || repeats < 1)
            throw new VarSharpException($"the training batch, steps and repeats must be positive, found {batch}, {steps} and {repeats}.");
        var config = pipeline.Model.Config;
        var device = pipeline.Model.parameters().First().device;
        using var model = new VarModel(config, device);
        using var generator = new Generator(1234, device);
        using (var init = new Generator(1, device)) model.InitWeights(init);
        using var step = new VarTrainStep(model, new VarTrainSettings { ComputeDType = computeDType });

        using var scope = NewDisposeScope();
        var idx = config.PatchNums.Select(pn => randint(0, config.VocabSize, [batch, (long)pn * pn], generator: generator, device: device)).ToList();
        Tensor x, gt, labels;
        using (no_grad()) x = pipeline.Tokenizer.IndicesToVarInput(idx);
        gt = cat(idx, 1);
        labels = arange(batch, device: device).remainder(config.NumClasses);

        void Once() => step.Step(labels, x, gt, generator, measureGradNorms: false).Dispose();
        Once();   // warm-up: the optimiser's state and libtorch's buffers are allocated here
        double seconds = SamplingBenchmark.Median(repeats, _ =>
        {
            for (int s = 0; s < steps; s++) Once();
        });
        return new TrainStepRate(batch, steps, steps / seconds, computeDType == ScalarType.BFloat16 ? "bf16" : "f32");
    }
}
