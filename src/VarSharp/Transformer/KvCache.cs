using TorchSharp;
using static TorchSharp.torch;

namespace VarSharp.Transformer;

/// <summary>
/// Keys and values of every block for one sampling run, preallocated as (B, H, L, head_dim) per layer. Each call of
/// <see cref="VarModel.StepLogits"/> writes one scale's keys/values at [Length, Length + pn²) and attends over
/// [0, Length + pn²) — no re-concatenation of the history. Owned by the caller; dispose it when the run ends.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor[] _k_BHLc;
    private readonly Tensor[] _v_BHLc;
    private bool _disposed;

    internal KvCache(int depth, long batchSize, int numHeads, int capacity, int headDim, ScalarType dtype, Device device)
    {
        BatchSize = batchSize;
        Capacity = capacity;
        _k_BHLc = new Tensor[depth];
        _v_BHLc = new Tensor[depth];
        for (int i = 0; i < depth; i++)
        {
            // The cache owns these buffers: keep them out of any dispose scope the caller may have open.
            _k_BHLc[i] = empty(batchSize, numHeads, capacity, headDim, dtype: dtype, device: device).DetachFromDisposeScope();
            _v_BHLc[i] = empty(batchSize, numHeads, capacity, headDim, dtype: dtype, device: device).DetachFromDisposeScope();
        }
    }

    /// <summary>Rows of the batch the cache was made for (2·B when guidance doubles the batch).</summary>
    public long BatchSize { get; }

    /// <summary>L, the number of token slots.</summary>
    public int Capacity { get; }

    /// <summary>Tokens already cached.</summary>
    public int Length { get; private set; }

    /// <summary>The scale index the next <see cref="VarModel.StepLogits"/> call must process.</summary>
    public int NextScale { get; private set; }

    public int Depth => _k_BHLc.Length;

    /// <summary>Forgets the cached tokens so the buffers can serve a new run of the same batch size.</summary>
    public void Reset()
    {
        Length = 0;
        NextScale = 0;
    }

    /// <summary>
    /// Writes this scale's keys/values (B, H, l, hd) for <paramref name="layer"/> after the cached ones and returns
    /// views over all keys/values so far (B, H, Length + l, hd). The views belong to the current dispose scope.
    /// </summary>
    internal (Tensor k_BHTc, Tensor v_BHTc) Append(int layer, Tensor k_BHlc, Tensor v_BHlc)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long l = k_BHlc.shape[2];
        if (Length + l > Capacity)
            throw new VarSharpException($"KV cache overflow: {Length} cached + {l} new tokens exceed its capacity of {Capacity}.");
        using (no_grad())
        {
            using var kSlot = _k_BHLc[layer].narrow(2, Length, l);
            using var vSlot = _v_BHLc[layer].narrow(2, Length, l);
            kSlot.copy_(k_BHlc);
            vSlot.copy_(v_BHlc);
        }
        return (_k_BHLc[layer].narrow(2, 0, Length + l), _v_BHLc[layer].narrow(2, 0, Length + l));
    }

    /// <summary>Marks one scale of <paramref name="tokens"/> tokens as cached (after every layer has appended).</summary>
    internal void Advance(int tokens)
    {
        Length += tokens;
        NextScale++;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _k_BHLc) t.Dispose();
        foreach (var t in _v_BHLc) t.Dispose();
    }
}
