using TorchSharp;

namespace VarSharp.Tests;

/// <summary>The build weakens libLibTorchSharp's GLIBCXX_3.4.32 need (docs/torchsharp-glibcxx.md); this proves it loads.</summary>
public class TorchSharpLoadsTests
{
    [Fact]
    public void NativeBackendLoadsAndComputes()
    {
        using var a = torch.arange(6, dtype: torch.float32).reshape(2, 3);
        using var b = torch.ones(3, 2);
        using var c = a.matmul(b);
        Assert.Equal(new[] { 3f, 3f, 12f, 12f }, c.data<float>().ToArray());
    }
}
