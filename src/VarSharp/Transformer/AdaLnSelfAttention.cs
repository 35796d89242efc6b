using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VarSharp.Transformer;

/// <summary>
/// One VAR block (AdaLNSelfAttn). The condition gives six (B, 1, C) vectors in the order
/// gamma1, gamma2, scale1, scale2, shift1, shift2, and
/// x += drop_path(attn(LN(x)·(1+scale1)+shift1)·gamma1); x += drop_path(ffn(LN(x)·(1+scale2)+shift2)·gamma2).
/// Without shared AdaLN they come from this block's <c>ada_lin</c> (SiLU→Linear(D, 6C)); with it, from the model's
/// shared_ada_lin output (B, 1, 6, C) plus this block's <c>ada_gss</c> (1, 1, 6, C).
/// </summary>
public sealed class AdaLnSelfAttention : nn.Module
{
    private readonly SelfAttention attn;
    private readonly Ffn ffn;
    private readonly Sequential? ada_lin;
    private readonly Parameter? ada_gss;

    private readonly long _c;
    private readonly double _eps;
    private readonly double _dropPath;

    public AdaLnSelfAttention(int blockIndex, long embedDim, long condDim, bool sharedAln, long numHeads, long ffnHidden,
        double normEps, double drop, double attnDrop, double dropPath, bool attnL2Norm, Device? device, ScalarType dtype)
        : base(nameof(AdaLnSelfAttention))
    {
        BlockIndex = blockIndex;
        _c = embedDim;
        _eps = normEps;
        _dropPath = dropPath;
        attn = new SelfAttention(embedDim, numHeads, attnL2Norm, attnDrop, drop, device, dtype);
        ffn = new Ffn(embedDim, ffnHidden, drop, device, dtype);
        if (sharedAln) ada_gss = new Parameter(zeros(new long[] { 1, 1, 6, embedDim }, dtype: dtype, device: device));
        else ada_lin = Layers.SiLULinear(condDim, 6 * embedDim, device, dtype);
        RegisterComponents();
    }

    public int BlockIndex { get; }

    /// <summary>Stochastic-depth probability of this block (training only).</summary>
    public double DropPathProb => _dropPath;

    internal SelfAttention Attn => attn;
    internal Ffn FeedForward => ffn;
    internal Linear? AdaLinear => ada_lin is null ? null : Layers.LinearOf(ada_lin);
    internal Parameter? AdaGss => ada_gss;

    /// <summary>Teacher-forcing block.</summary>
    /// <param name="x_BLC">tokens</param>
    /// <param name="condBD_or_gss">cond_BD (B, D), or with shared AdaLN the shared_ada_lin output (B, 1, 6, C)</param>
    /// <param name="attnBias_11LL">additive mask or null</param>
    /// <param name="generator">drawn from for drop_path / dropout when training</param>
    public Tensor Forward(Tensor x_BLC, Tensor condBD_or_gss, Tensor? attnBias_11LL, Generator? generator) =>
        Run(x_BLC, condBD_or_gss, attnBias_11LL, null, 0, generator);

    internal Tensor ForwardCached(Tensor x_BlC, Tensor condBD_or_gss, KvCache cache, int layer) =>
        Run(x_BlC, condBD_or_gss, null, cache, layer, null);

    private Tensor Run(Tensor x_BLC, Tensor condBD_or_gss, Tensor? attnBias_11LL, KvCache? cache, int layer, Generator? generator)
    {
        using var scope = NewDisposeScope();
        var ada_B16C = ada_gss is not null
            ? ada_gss.add(condBD_or_gss)
            : ada_lin!.forward(condBD_or_gss).view(-1, 1, 6, _c);
        var g = ada_B16C.unbind(2);
        Tensor gamma1 = g[0], gamma2 = g[1], scale1 = g[2], scale2 = g[3], shift1 = g[4], shift2 = g[5];

        bool dropPath = training && _dropPath > 0 && cache is null;

        var h1_BLC = nn.functional.layer_norm(x_BLC, [_c], null, null, _eps).mul(scale1.add(1)).add_(shift1);
        var a_BLC = (cache is null ? attn.Forward(h1_BLC, attnBias_11LL, generator) : attn.ForwardCached(h1_BLC, cache, layer)).mul(gamma1);
        if (dropPath) a_BLC = a_BLC.mul(Stochastic.DropPathMask(a_BLC, _dropPath, VarModel.RequireGenerator(generator, "drop_path_rate")));
        x_BLC = x_BLC.add(a_BLC);

        var h2_BLC = nn.functional.layer_norm(x_BLC, [_c], null, null, _eps).mul(scale2.add(1)).add_(shift2);
        var f_BLC = ffn.Forward(h2_BLC, generator).mul(gamma2);
        if (dropPath) f_BLC = f_BLC.mul(Stochastic.DropPathMask(f_BLC, _dropPath, VarModel.RequireGenerator(generator, "drop_path_rate")));
        x_BLC = x_BLC.add(f_BLC);

        return x_BLC.MoveToOuterDisposeScope();
    }
}
