using TorchSharp;
using VarSharp.Tokenizer;
using static TorchSharp.torch;

namespace VarSharp.Training;

/// <summary>
/// Initialises a tokenizer's parameters from an explicit generator (no global RNG, so two runs with the same seed
/// start from the same weights even while other code uses torch's default generator). The distributions are
/// PyTorch's defaults: convolution weights and biases U(±1/√fan_in) (kaiming_uniform with a = √5), GroupNorm 1 and 0;
/// the codebook U(±1/V), the reference's eini = −1.
/// </summary>
public static class TokenizerInit
{
    public const string CodebookName = "quantize.embedding.weight";

    public static void Initialize(VqVae vae, Generator generator)
    {
        using var noGrad = no_grad();
        var named = vae.named_parameters().ToList();
        var byName = named.ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in named)
        {
            if (name == CodebookName)
            {
                double bound = 1.0 / vae.Config.VocabSize;
                p.uniform_(-bound, bound, generator);
            }
            else if (p.dim() >= 2)
                p.uniform_(-Bound(p), Bound(p), generator);
            else if (name.EndsWith(".weight", StringComparison.Ordinal))
                p.fill_(1);
            else if (name.EndsWith("bias", StringComparison.Ordinal))
            {
                var weightName = name[..^"bias".Length] + "weight";
                if (byName.TryGetValue(weightName, out var w) && w.dim() >= 2) p.uniform_(-Bound(w), Bound(w), generator);
                else p.zero_();
            }
            else throw new InvalidOperationException($"no initialisation rule for tokenizer parameter {name}");
        }
    }

    /// <summary>PyTorch's default bound 1/√fan_in for a layer's weight (and its bias).</summary>
    internal static double Bound(Tensor weight)
    {
        long fanIn = weight.shape.Skip(1).Aggregate(1L, (a, b) => a * b);
        return 1.0 / Math.Sqrt(fanIn);
    }
}
