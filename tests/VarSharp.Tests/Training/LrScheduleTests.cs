using VarSharp.Training;

namespace VarSharp.Tests.Training;

public class LrScheduleTests
{
    [Theory]
    [InlineData("cos")]
    [InlineData("lin00")]
    public void WarmsUpThenDecaysToTheFloor(string decay)
    {
        // Warmup 10 of 111 steps: the decay spans steps 10..110, its midpoint is step 60 for both shapes.
        var s = new LrSchedule(1e-3, WarmupSteps: 10, TotalSteps: 111, decay, WarmupStartRatio: 0.005, MinRatio: 0.01);
        Assert.Equal(1e-3 * 0.005, s.At(0), 12);
        Assert.Equal(1e-3 * (0.005 + 0.995 * 0.5), s.At(5), 12);
        Assert.Equal(1e-3, s.At(10), 12);
        Assert.Equal(1e-3 * (0.01 + 0.99 * 0.5), s.At(60), 12);
        Assert.Equal(1e-3 * 0.01, s.At(110), 12);
        for (int i = 11; i <= 110; i++) Assert.True(s.At(i) < s.At(i - 1));
        Assert.True(decay == "cos" ? s.At(20) > 1e-3 * (1 - 0.099) : Math.Abs(s.At(20) - 1e-3 * (1 - 0.099)) < 1e-12);
    }
}

public class LrScheduleLin0Tests
{
    [Fact]
    public void Lin0HoldsThePeakForFivePercentThenFallsLinearly()
    {
        // Warmup 10 of 111 steps: the decay span is 100 steps (10..110); lin0 holds the peak for 5 of them.
        var s = new LrSchedule(1e-3, WarmupSteps: 10, TotalSteps: 111, "lin0", WarmupStartRatio: 0.005, MinRatio: 0.01);
        Assert.Equal(1e-3 * 0.005, s.At(0), 12);
        for (int i = 10; i < 15; i++) Assert.Equal(1e-3, s.At(i), 12);
        // passed = 0.05 exactly: wpe + (1 − wpe)·0.95/0.95 = 1.
        Assert.Equal(1e-3, s.At(15), 12);
        Assert.Equal(1e-3 * (0.01 + 0.99 * 0.5 / 0.95), s.At(60), 12);
        Assert.Equal(1e-3 * 0.01, s.At(110), 12);
        for (int i = 16; i <= 110; i++) Assert.True(s.At(i) < s.At(i - 1));
    }
}

/// <summary>The reference's other sche names (utils/lr_control.py), each with the meaning it has there.</summary>
public class LrScheduleShapeTests
{
    // Warmup 10 of 111 steps: the decay span is 100 steps (10..110), so step 10 + k has passed = k / 100.
    private static LrSchedule Of(string decay) => new(1.0, WarmupSteps: 10, TotalSteps: 111, decay, WarmupStartRatio: 0.005, MinRatio: 0.01);

    [Fact]
    public void LinHoldsThePeakForFifteenPercentThenFallsLinearly()
    {
        var s = Of("lin");
        for (int k = 0; k <= 15; k++) Assert.Equal(1.0, s.At(10 + k), 12);
        Assert.Equal(0.01 + 0.99 * 0.5 / 0.85, s.At(60), 12);
        Assert.Equal(0.01, s.At(110), 12);
        // Equal steps down after the hold: a straight line.
        double drop = s.At(30) - s.At(31);
        for (int k = 16; k < 100; k++) Assert.Equal(drop, s.At(10 + k) - s.At(11 + k), 12);
    }

    [Fact]
    public void ExpHoldsThenFallsGeometricallyToTheFloor()
    {
        var s = Of("exp");
        for (int k = 0; k < 15; k++) Assert.Equal(1.0, s.At(10 + k), 12);
        Assert.Equal(0.01, s.At(110), 12);
        // A constant ratio between consecutive steps after the hold.
        double ratio = s.At(41) / s.At(40);
        for (int k = 16; k < 100; k++) Assert.Equal(ratio, s.At(11 + k) / s.At(10 + k), 10);
    }

    [Fact]
    public void LinTFallsToItsMidpointLevelAtTThenToTheFloor()
    {
        var s = Of("lin0.3");
        double mid = (1 + 0.01 + 0.99 * 0.7) / 2;
        Assert.Equal(1.0, s.At(10), 12);
        Assert.Equal(mid, s.At(40), 12);
        Assert.Equal(0.01, s.At(110), 12);
        for (int k = 1; k <= 100; k++) Assert.True(s.At(10 + k) < s.At(9 + k));
    }

    [Fact]
    public void ExpNeedsAFloorAboveZero()
    {
        var e = Assert.Throws<VarSharpException>(() => new VarSharp.Config.VarTrainConfig { Tokenizer = "t", Decay = "exp", MinLrRatio = 0 }.Validate());
        Assert.Contains("min_lr_ratio must be above 0 for the exp decay", e.Message, StringComparison.Ordinal);
        new VarSharp.Config.VarTrainConfig { Tokenizer = "t", Decay = "exp", MinLrRatio = 0.01 }.Validate();
    }

    [Theory]
    [InlineData("cos", true)]
    [InlineData("lin", true)]
    [InlineData("lin0", true)]
    [InlineData("lin00", true)]
    [InlineData("exp", true)]
    [InlineData("lin0.3", true)]
    [InlineData("lin1", false)]
    [InlineData("lin-0.2", false)]
    [InlineData("linear", false)]
    [InlineData("step", false)]
    public void OnlyTheReferenceNamesAreKnown(string decay, bool known)
    {
        Assert.Equal(known, LrSchedule.IsKnown(decay));
        if (!known) Assert.Throws<InvalidOperationException>(() => Of(decay).At(50));
    }
}
