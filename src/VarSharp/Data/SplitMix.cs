namespace VarSharp.Data;

/// <summary>
/// SplitMix64: a tiny, fully specified random stream. Data order and augmentation are pure functions of their inputs
/// (seed, epoch, position) through it, so a resumed run or a prefetching worker reproduces them exactly on any machine.
/// </summary>
public struct SplitMix
{
    private ulong state;

    public SplitMix(ulong seed) => state = seed;

    /// <summary>A stream keyed by several values (seed, epoch, …), each mixed in turn.</summary>
    public static SplitMix Keyed(params ulong[] keys)
    {
        ulong s = 0x9E3779B97F4A7C15UL;
        foreach (var k in keys) s = Mix(s ^ Mix(k + 0x632BE59BD9B4E019UL));
        return new SplitMix(s);
    }

    public ulong Next()
    {
        state += 0x9E3779B97F4A7C15UL;
        return Mix(state);
    }

    /// <summary>A uniform integer in [0, bound) without modulo bias (rejection sampling).</summary>
    public int NextInt(int bound)
    {
        if (bound <= 0) throw new ArgumentOutOfRangeException(nameof(bound), bound, "bound must be positive");
        ulong b = (ulong)bound;
        ulong limit = ulong.MaxValue - ulong.MaxValue % b;
        ulong r;
        do r = Next(); while (r >= limit);
        return (int)(r % b);
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

/// <summary>The order in which an epoch visits a dataset: a pure function of (seed, epoch, count).</summary>
public static class EpochOrder
{
    /// <summary>A Fisher–Yates permutation of 0..count−1 drawn from SplitMix keyed by (seed, epoch).</summary>
    public static int[] Permutation(ulong seed, long epoch, int count)
    {
        var order = new int[count];
        for (int i = 0; i < count; i++) order[i] = i;
        var rng = SplitMix.Keyed(seed, (ulong)epoch, 0x5EEDUL);
        for (int i = count - 1; i > 0; i--)
        {
            int j = rng.NextInt(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }
}
