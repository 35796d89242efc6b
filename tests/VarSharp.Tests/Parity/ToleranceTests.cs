using VarSharp.Parity;

namespace VarSharp.Tests.Parity;

/// <summary>How vector names map to guidance scales: unseen cases may use any cfg, integer or not.</summary>
public class ToleranceTests
{
    [Theory]
    [InlineData("ar.cfg4.logits_cfg", 4.0)]
    [InlineData("ar.cfg1.img", 1.0)]
    [InlineData("ar.cfg1.5.img", 1.5)]          // not 1: the dot of the number is not the tensor's
    [InlineData("ar.cfg1.5.logits_cfg", 1.5)]
    [InlineData("ar.cfg1p5.fhat", 1.5)]
    [InlineData("ar.cfg_4.idx", 4.0)]           // not 0.4
    [InlineData("ar.cfg0.idx", 0.0)]
    public void TheGuidanceScaleIsReadFromTheName(string name, double cfg) => Assert.Equal(cfg, Tolerance.CfgOf(name));

    [Fact]
    public void ANameWithoutANumberMatchesNoGuidanceScale() => Assert.True(double.IsNaN(Tolerance.CfgOf("ar.cfgX.img")));

    [Fact]
    public void GuidedLogitsGetRoomInProportionToTheGuidance()
    {
        var one = Tolerance.For("ar.cfg1.logits_cfg", isInteger: false, imageSize: 32);
        var mixed = Tolerance.For("ar.cfg2.5.logits_cfg", isInteger: false, imageSize: 32);
        Assert.Equal(1e-4 * 3, one.Factor, 12);
        Assert.Equal(1e-4 * 6, mixed.Factor, 12);
    }
}
