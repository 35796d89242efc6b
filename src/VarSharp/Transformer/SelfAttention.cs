using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace VarSharp.Transformer;

/// <summary>
/// VAR's multi-head self-attention. qkv = x·W_qkvᵀ + cat(q_bias, zero_k_bias, v_bias), rows ordered [q|k|v] and
/// head-major. With attn_l2_norm, q and k are L2-normalised over head_dim, q is multiplied per head by
/// exp(min(scale_mul_1H11, ln 100)) and the softmax scale is 1; otherwise the scale is 0.25/√head_dim.
/// </summary>
public sealed class SelfAttention : nn.Module
{
    private readonly Linear mat_qkv;
    private readonly Parameter q_bias;
    private readonly Parameter v_bias;
    private readonly Tensor zero_k_bias;
    private readonly Parameter? scale_mul_1H11;
    private readonly Linear proj;

    private readonly long _c;
    private readonly long _numHeads;
    private readonly long _headDim;
    private readonly double _scale;
    private readonly double _maxScaleMul;
    private readonly double _attnDrop;
    private readonly double _projDrop;

    public SelfAttention(long embedDim, long numHeads, bool attnL2Norm, double attnDrop, double projDrop, Device? device, ScalarType dtype)
        : base(nameof(SelfAttention))
    {
        if (embedDim % numHeads != 0)
            throw new VarSharpException($"embed_dim ({embedDim}) must be divisible by num_heads ({numHeads}).");
        _c = embedDim;
        _numHeads = numHeads;
        _headDim = embedDim / numHeads;
        _attnDrop = attnDrop;
        _projDrop = projDrop;
        _maxScaleMul = Math.Log(100.0);
        if (attnL2Norm)
        {
            _scale = 1.0;
            scale_mul_1H11 = new Parameter(full(new long[] { 1, numHeads, 1, 1 }, Math.Log(4.0), dtype: dtype, device: device));
        }
        else
        {
            _scale = 0.25 / Math.Sqrt(_headDim);
        }
        mat_qkv = Layers.Linear(embedDim, 3 * embedDim, bias: false, device, dtype);
        q_bias = new Parameter(zeros(embedDim, dtype: dtype, device: device));
        v_bias = new Parameter(zeros(embedDim, dtype: dtype, device: device));
        zero_k_bias = zeros(embedDim, dtype: dtype, device: device);
        proj = Layers.Linear(embedDim, embedDim, bias: true, device, dtype);
        RegisterComponents();
    }

    internal Linear Proj => proj;
    internal Parameter QBias => q_bias;
    internal Parameter VBias => v_bias;
    internal Parameter? ScaleMul => scale_mul_1H11;

    /// <summary>Teacher-forcing attention over the whole sequence with an additive mask (1, 1, L, L) or none.</summary>
    public Tensor Forward(Tensor x_BLC, Tensor? attnBias_11LL, Generator? generator) => Run(x_BLC, attnBias_11LL, null, 0, generator);

    /// <summary>
    /// One scale with a KV cache: this scale's keys/values are appended to layer <paramref name="layer"/> of the
    /// cache and the queries attend over everything cached so far, without a mask.
    /// </summary>
    internal Tensor ForwardCached(Tensor x_BlC, KvCache cache, int layer) => Run(x_BlC, null, cache, layer, null);

    private Tensor Run(Tensor x_BLC, Tensor? attnBias_11LL, KvCache? cache, int layer, Generator? generator)
    {
        using var scope = NewDisposeScope();
        long B = x_BLC.shape[0], L = x_BLC.shape[1];

        var bias_3C = cat([q_bias, zero_k_bias, v_bias], 0);
        var qkv_BL3Hc = nn.functional.linear(x_BLC, mat_qkv.weight!, bias_3C).view(B, L, 3, _numHeads, _headDim);
        var qkv = qkv_BL3Hc.permute(2, 0, 3, 1, 4).unbind(0);   // each B, H, L, hd
        Tensor q_BHLc = qkv[0], k_BHLc = qkv[1], v_BHLc = qkv[2];

        if (scale_mul_1H11 is not null)
        {
            var scaleMul_1H11 = scale_mul_1H11.clamp_max(_maxScaleMul).exp();
            q_BHLc = nn.functional.normalize(q_BHLc, p: 2.0, dim: -1).mul(scaleMul_1H11);
            k_BHLc = nn.functional.normalize(k_BHLc, p: 2.0, dim: -1);
        }

        if (cache is not null) (k_BHLc, v_BHLc) = cache.Append(layer, k_BHLc, v_BHLc);   // k, v: B, H, T, hd

        // Plain softmax attention, as the reference's slow_attn: softmax(q·scale @ kᵀ + mask) @ v.
        var attn_BHLT = q_BHLc.mul(_scale).matmul(k_BHLc.transpose(-2, -1));
        if (attnBias_11LL is not null) attn_BHLT = attn_BHLT.add_(attnBias_11LL);
        attn_BHLT = attn_BHLT.softmax(-1);
        if (training && _attnDrop > 0 && cache is null)
            attn_BHLT = Stochastic.Dropout(attn_BHLT, _attnDrop, VarModel.RequireGenerator(generator, "attn_drop_rate"));
        var oup_BLC = attn_BHLT.matmul(v_BHLc).transpose(1, 2).reshape(B, L, _c);

        var y_BLC = proj.forward(oup_BLC);
        if (training && _projDrop > 0 && cache is null)
            y_BLC = Stochastic.Dropout(y_BLC, _projDrop, VarModel.RequireGenerator(generator, "drop_rate"));
        return y_BLC.MoveToOuterDisposeScope();
    }
}
