namespace VarSharp.Sampling;

/// <summary>
/// The sampling settings a model recommends, from the optional `sampling` block of its config.json
/// (<c>{"cfg": 1.5, "top_k": 113, "top_p": 0.95}</c>, each field optional). What a model does not say falls back to the
/// reference demo's settings (<see cref="Reference"/>). `sample`, `serve` and <see cref="VarPipeline.DefaultOptions"/>
/// use them wherever the caller gives no value of its own.
/// </summary>
/// <param name="Cfg">Guidance scale, ≥ 0.</param>
/// <param name="TopK">Top-k, 0 = off; null: the reference demo's share of the codebook (<see cref="SampleOptions.TopK"/>).</param>
/// <param name="TopP">Top-p in [0, 1], 0 = off.</param>
public sealed record SamplingDefaults(double Cfg = 4.0, int? TopK = null, double TopP = 0.95)
{
    /// <summary>The reference demo's settings: cfg 4, top-k 900 of 4096 (scaled to the vocabulary), top-p 0.95.</summary>
    public static SamplingDefaults Reference { get; } = new();
}
