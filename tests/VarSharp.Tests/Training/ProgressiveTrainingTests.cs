using VarSharp.Tests.Support;
using VarSharp.Training;
using static TorchSharp.torch;

namespace VarSharp.Tests.Training;

/// <summary>Progressive training: the reference's stage schedule, the weighted loss, and a run that uses both.</summary>
public class ProgressiveTrainingTests
{
    // pg 0.5, pg0 1, four scales, 10 warmup steps of 100, new stages ramp over 5 steps. Expected values worked out by
    // hand from train.py's formula: prog_si = pg0 + round((step − wp) / (pg·max − wp) · (S − 1 − pg0)), Python's round.
    private static readonly ProgressiveSchedule Schedule = new(0.5, 1, 4, 10, 100, 5);

    [Theory]
    [InlineData(0, 1)]
    [InlineData(10, 1)]     // still warming up (step ≤ wp)
    [InlineData(20, 1)]     // 10/40·2 = 0.5 rounds to even: 0
    [InlineData(21, 2)]     // 0.55 → 1
    [InlineData(39, 2)]     // 1.45 → 1
    [InlineData(40, 3)]     // 1.5 rounds to even: 2
    [InlineData(50, 3)]     // pg·max reached
    [InlineData(99, 3)]
    public void StagesGrowAsTheReferenceRoundsThem(long step, int stage) => Assert.Equal(stage, Schedule.StageIndexAt(step));

    [Fact]
    public void ANewStageRampsItsScaleInExceptTheFirstAndTheLast()
    {
        Assert.Equal(new ProgressiveStage(1, 1), Schedule.At(5));       // first stage: full weight from the start
        Assert.Equal(new ProgressiveStage(2, 0.2), Schedule.At(21));    // first step of stage 2: 1/5
        Assert.Equal(new ProgressiveStage(2, 0.6), Schedule.At(23));
        Assert.Equal(new ProgressiveStage(2, 1), Schedule.At(30));
        Assert.Equal(ProgressiveStage.Full, Schedule.At(40));            // the last stage trains everything at once
        Assert.Equal(new ProgressiveStage(2, 0.01), (Schedule with { StageWarmupSteps = 1000 }).At(21));   // floor 0.01
        var off = Schedule with { Fraction = 0 };
        Assert.Equal(-1, off.StageIndexAt(0));
        Assert.Equal(ProgressiveStage.Full, off.At(0));
    }

    [Theory]
    [InlineData(0.8, "lin0.8")]
    [InlineData(0.25, "lin0.25")]
    [InlineData(0.333333333, "lin0.333333")]   // Python's :g keeps six significant digits
    [InlineData(1e-05, "lin1e-05")]
    public void TheDecayNameIsWrittenAsPythonWritesIt(double pg, string name)
    {
        Assert.Equal(name, "lin" + ProgressiveSchedule.PythonG(pg));
        Assert.True(LrSchedule.IsKnown(name), $"{name} must be a decay the schedule knows");
    }

    [Fact]
    public void TheLossWeighsEveryTokenByOneOverTheWholeLengthAndTheNewestScaleByItsRamp()
    {
        using var scope = NewDisposeScope();
        // Scales 1, 2, 3 (L = 14); the stage ends with scale 1 (tokens 0..4, scale 1 from token 1). Uniform logits make
        // every token's cross-entropy ln V, so the loss is ln V · (1 + 4 · 0.5) / 14.
        const int V = 16;
        var logits = zeros(2, 5, V);
        var gt = tensor(new long[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }).view(2, 5);
        double loss = VarTrainStep.Loss(logits, gt, fullL: 14, newestBegin: 1, newestWeight: 0.5).item<float>();
        Assert.Equal(Math.Log(V) * 3 / 14, loss, 6);
        // The whole sequence with the plain loss: the token mean.
        double plain = VarTrainStep.Loss(zeros(2, 14, V), zeros(2, 14, ScalarType.Int64)).item<float>();
        Assert.Equal(Math.Log(V), plain, 6);
    }

    [Fact]
    public void MetricsOfASequenceCutBeforeTheLastScaleHaveNoTail()
    {
        using var scope = NewDisposeScope();
        // Logits that pick token 0 everywhere, targets 0 for half the tokens: 50 % accuracy over the whole sequence.
        var logits = zeros(2, 4, 8);
        logits[TensorIndex.Ellipsis, 0] = tensor(5f);
        var gt = tensor(new long[] { 0, 1, 0, 1, 0, 1, 0, 1 }).view(2, 4);
        var cut = VarTokenMetrics.Of(logits, gt, lastL: 0);
        Assert.Equal(50, cut.AccMean, 9);
        Assert.True(double.IsNaN(cut.LossTail) && double.IsNaN(cut.AccTail));
        var whole = VarTokenMetrics.Of(logits, gt, lastL: 2);
        Assert.Equal(cut.LossMean, whole.LossMean, 12);
        Assert.Equal(50, whole.AccTail, 9);
    }

    [Fact]
    public void ARunTruncatesTheSequenceByTheScheduleAndLogsItsStage()
    {
        using var tmp = new TempFolder();
        var (tok, data) = VarTrainerTests.Inputs(tmp);
        // Four scales, 8 steps, warmup 2, pg 0.8 from scale 0, ramp 2: stages 0,0,0,1,1,2 then the whole sequence
        // (step 6: round(4/4.4 · 3) = 3, the last scale), weights 1,1,1 (first stage), 0.5,1 (stage 1), 0.5 (stage 2), 1,1.
        var cfg = VarTrainerTests.Train(tok, data, steps: 8) with { Progressive = 0.8, ProgressiveStart = 0, ProgressiveWarmupSteps = 2 };
        using (var t = VarTrainer.Start(tmp.File("run"), VarTrainerTests.Model(TinyConfigs.VqVae()), cfg)) Assert.True(t.Run().Finished);
        var train = TrainLog.Read(Path.Combine(tmp.File("run"), VarTrainer.LogFile)).Where(o => o["kind"]!.GetValue<string>() == "train").ToList();
        Assert.Equal(new[] { 0, 0, 0, 1, 1, 2, -1, -1 }, train.Select(o => o["prog_scale"]!.GetValue<int>()));
        Assert.Equal(new[] { 1, 1, 1, 0.5, 1, 0.5, 1, 1 }, train.Select(o => o["prog_weight"]!.GetValue<double>()));
        // The tail (last scale) metrics exist only once the whole sequence trains.
        Assert.Equal(new[] { false, false, false, false, false, false, true, true }, train.Select(o => o["loss_tail"] is not null));
    }

    [Fact]
    public void AStartScaleTheModelDoesNotHaveIsRefused()
    {
        using var tmp = new TempFolder();
        var (tok, data) = VarTrainerTests.Inputs(tmp);
        var cfg = VarTrainerTests.Train(tok, data) with { Progressive = 0.5, ProgressiveStart = 4 };
        var e = Assert.Throws<VarSharpException>(() => VarTrainer.Start(tmp.File("run"), VarTrainerTests.Model(TinyConfigs.VqVae()), cfg));
        Assert.Contains("progressive_start is 4", e.Message);
        Assert.False(Directory.Exists(tmp.File("run")));
    }
}
