using VarSharp.Training;

namespace VarSharp.Tests.Training;

public class LrScheduleTests
{
    [Theory]
    [InlineData("cos")]
    [InlineData("lin")]
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
