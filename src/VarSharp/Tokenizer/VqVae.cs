using TorchSharp;
using TorchSharp.Modules;
using VarSharp.Config;
using static TorchSharp.torch;

namespace VarSharp.Tokenizer;

/// <summary>Output of <see cref="VqVae.TrainForward"/>: reconstruction (not clamped), vq loss and code hits per scale (S, V).</summary>
public sealed record VqVaeTrainOutput(Tensor Reconstruction, Tensor VqLoss, Tensor Hits_SV) : IDisposable
{
    public void Dispose()
    {
        Reconstruction.Dispose();
        VqLoss.Dispose();
        Hits_SV.Dispose();
    }
}

/// <summary>
/// The multi-scale residual VQ-VAE tokenizer. Module fields carry the reference's state-dict names (encoder, decoder,
/// quantize, quant_conv, post_quant_conv). Images are (B, in_channels, H, W) in [−1, 1] with H = W = image size.
/// </summary>
public sealed class VqVae : nn.Module
{
    private readonly Encoder encoder;
    private readonly Decoder decoder;

    internal Decoder Decoder => decoder;
    private readonly MultiScaleQuantizer quantize;
    private readonly Conv2d quant_conv;
    private readonly Conv2d post_quant_conv;

    public VqVaeConfig Config { get; }

    public VqVae(VqVaeConfig config, Device? device = null) : base(nameof(VqVae))
    {
        Config = config.Validate();
        encoder = new Encoder(config, device, dropoutSource);
        decoder = new Decoder(config, device, dropoutSource);
        quantize = new MultiScaleQuantizer(config, device);
        quant_conv = Layers.Conv2d(config.ZChannels, config.ZChannels, config.QuantConvKs, 1, config.QuantConvKs / 2, device);
        post_quant_conv = Layers.Conv2d(config.ZChannels, config.ZChannels, config.QuantConvKs, 1, config.QuantConvKs / 2, device);
        RegisterComponents();
        eval();
    }

    public MultiScaleQuantizer Quantizer => quantize;

    private readonly DropoutSource dropoutSource = new();

    /// <summary>
    /// The generator the dropout layers draw from in training mode (config dropout &gt; 1e-6); a training forward without
    /// one is refused. Owned by the caller (the tokenizer trainer), not disposed with the model.
    /// </summary>
    public Generator? DropoutGenerator
    {
        get => dropoutSource.Generator;
        set => dropoutSource.Generator = value;
    }

    /// <summary>Where the weights live; inputs go there, results are read back with <c>.cpu()</c>.</summary>
    public Device Device => post_quant_conv.weight!.device;
    public Encoder EncoderModule => encoder;

    /// <summary>The latent f = quant_conv(encoder(img)), (B, Cvae, h, w).</summary>
    public Tensor Encode(Tensor img_BCHW)
    {
        CheckImage(img_BCHW);
        using var enc = encoder.call(img_BCHW);
        return quant_conv.call(enc);
    }

    /// <summary>The raw encoder output before quant_conv (for diagnostics and parity checks).</summary>
    public Tensor EncoderOutput(Tensor img_BCHW)
    {
        CheckImage(img_BCHW);
        return encoder.call(img_BCHW);
    }

    /// <summary>Decodes a latent f_hat to an image clamped to [−1, 1] (fhat_to_img).</summary>
    public Tensor FhatToImage(Tensor fHat_BChw)
    {
        using var scope = NewDisposeScope();
        return decoder.call(post_quant_conv.call(fHat_BChw)).clamp_(-1, 1).MoveToOuterDisposeScope();
    }

    /// <summary>Image → token indices per scale, each (B, pn²) int64 (img_to_idxBl).</summary>
    public List<Tensor> ImageToIndices(Tensor img_BCHW)
    {
        using var f = Encode(img_BCHW);
        using var q = quantize.Quantize(f, keepFhats: false, keepDiagnostics: false);
        var result = q.Indices.ToList();
        q.Indices.Clear();
        return result;
    }

    /// <summary>Token indices → image in [−1, 1]; the final image only, or one image per scale (idxBl_to_img, same_shape).</summary>
    public List<Tensor> IndicesToImages(IReadOnlyList<Tensor> idx_Bl, bool lastOnly)
    {
        var fhats = quantize.IndicesToFhats(idx_Bl, lastOnly);
        var images = new List<Tensor>(fhats.Count);
        foreach (var fhat in fhats)
        {
            images.Add(FhatToImage(fhat));
            fhat.Dispose();
        }
        return images;
    }

    /// <summary>Token indices → final image in [−1, 1].</summary>
    public Tensor IndicesToImage(IReadOnlyList<Tensor> idx_Bl) => IndicesToImages(idx_Bl, lastOnly: true)[0];

    /// <summary>Encode, quantize at every scale, decode the last f_hat: the tokenizer's reconstruction in [−1, 1].</summary>
    public Tensor Reconstruct(Tensor img_BCHW)
    {
        using var f = Encode(img_BCHW);
        using var q = quantize.Quantize(f, keepFhats: true, keepDiagnostics: false);
        return FhatToImage(q.Fhats[^1]);
    }

    /// <summary>The transformer's teacher-forcing input from per-scale indices, (B, L − first_l, Cvae).</summary>
    public Tensor IndicesToVarInput(IReadOnlyList<Tensor> idx_Bl) => quantize.IndicesToVarInput(idx_Bl);

    /// <summary>
    /// The training forward (VQVAE.forward): the decoder output of the straight-through f_hat, NOT clamped, with the vq
    /// loss. Gradients reach the encoder through the straight-through path and the codebook and φ through the vq loss.
    /// <paramref name="recordHits"/>: see <see cref="MultiScaleQuantizer.TrainForward"/>.
    /// </summary>
    public VqVaeTrainOutput TrainForward(Tensor img_BCHW, bool recordHits = true)
    {
        CheckImage(img_BCHW);
        using var scope = NewDisposeScope();
        var f = quant_conv.call(encoder.call(img_BCHW));
        var (fHat, vqLoss, hits) = quantize.TrainForward(f, recordHits);
        var rec = decoder.call(post_quant_conv.call(fHat));
        return new VqVaeTrainOutput(rec.MoveToOuterDisposeScope(), vqLoss.MoveToOuterDisposeScope(), hits.MoveToOuterDisposeScope());
    }

    /// <summary>Throws a one-sentence error unless the batch is (B, in_channels, S, S) with S the configured image size.</summary>
    public void CheckImage(Tensor img_BCHW)
    {
        int s = Config.ImageSize;
        if (img_BCHW.dim() != 4 || img_BCHW.shape[1] != Config.InChannels || img_BCHW.shape[2] != s || img_BCHW.shape[3] != s)
            throw new VarSharpException(
                $"This tokenizer needs images of shape (B, {Config.InChannels}, {s}, {s}) (last patch {Config.LatentSize} × downsample {Config.Downsample}) but got ({string.Join(", ", img_BCHW.shape)}).");
        if (img_BCHW.dtype != float32)
            throw new VarSharpException($"Images must be float32 in [-1, 1] but got {img_BCHW.dtype}.");
    }
}
