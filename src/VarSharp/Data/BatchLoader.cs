using System.Collections.Concurrent;

namespace VarSharp.Data;

/// <summary>Where a run stands in its data: the epoch and the index of the next batch within it.</summary>
public readonly record struct DataPosition(long Epoch, int Batch)
{
    public override string ToString() => $"epoch {Epoch}, batch {Batch}";
}

/// <summary>One batch: pixels (B, C, S, S) flattened CHW per sample in [−1, 1], labels, and where it came from.</summary>
public sealed record Batch(float[] Pixels, long[] Labels, int Size, int Channels, int ImageSize, DataPosition Position)
{
    public long[] Shape => [Size, Channels, ImageSize, ImageSize];
}

/// <summary>
/// Deterministic shuffled batches with background prefetch. Epoch e visits the dataset in
/// <see cref="EpochOrder.Permutation"/>(seed, e) order, drops the last partial batch, and gives each sample an
/// augmentation key derived from (seed, epoch, slot); so batch (e, b) is a pure function of (seed, e, b) and a run
/// resumed at any <see cref="DataPosition"/> sees exactly the batches an uninterrupted one would. One worker thread
/// fills a bounded queue ahead of the consumer; with prefetch 0 batches are made on the caller's thread.
/// </summary>
public sealed class BatchLoader : IDisposable
{
    private readonly IImageDataset data;
    private readonly int batchSize;
    private readonly ulong seed;
    private readonly bool shuffle;
    private readonly BlockingCollection<Batch>? queue;
    private readonly CancellationTokenSource stop = new();
    private readonly Thread? worker;
    private Exception? workerError;
    private DataPosition produce;
    private int[]? order;
    private long orderEpoch = -1;

    public BatchLoader(IImageDataset data, int batchSize, ulong seed, DataPosition start, int prefetch = 2, bool shuffle = true)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (batchSize < 1) throw new VarSharpException($"The batch size must be positive but is {batchSize}.");
        if (data.Count < batchSize)
            throw new VarSharpException($"{data.Description} has {data.Count} images, fewer than one batch of {batchSize}.");
        if (prefetch < 0) throw new VarSharpException($"Prefetch depth must be 0 or more but is {prefetch}.");
        long floats = (long)batchSize * data.Channels * data.ImageSize * data.ImageSize;
        if (floats > Array.MaxLength)
            throw new VarSharpException($"A batch of {batchSize} images of {data.Channels}×{data.ImageSize}×{data.ImageSize} holds {floats} values, more than one array can; use a smaller batch (gradient accumulation keeps the effective size).");
        this.data = data;
        this.batchSize = batchSize;
        this.seed = seed;
        this.shuffle = shuffle;
        BatchesPerEpoch = data.Count / batchSize;
        if (start.Epoch < 0 || start.Batch < 0 || start.Batch >= BatchesPerEpoch)
            throw new VarSharpException($"Data position ({start}) is outside the {BatchesPerEpoch} batches per epoch of {data.Description}.");
        Position = start;
        produce = start;
        if (prefetch > 0)
        {
            queue = new BlockingCollection<Batch>(prefetch);
            worker = new Thread(Work) { IsBackground = true, Name = "varsharp-prefetch" };
            worker.Start();
        }
    }

    public int BatchesPerEpoch { get; }

    /// <summary>The position of the next batch <see cref="Next"/> returns (what a checkpoint stores).</summary>
    public DataPosition Position { get; private set; }

    public Batch Next()
    {
        Batch batch;
        if (queue is null) batch = Make();
        else
        {
            try
            {
                batch = queue.Take(stop.Token);
            }
            catch (InvalidOperationException) when (workerError is not null)
            {
                // The worker's own exception, as if the batch had been made here: its type decides how it is reported
                // (a bad file is a user error, running out of memory too), and --prefetch 0 reports it the same way.
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(workerError).Throw();
                throw;
            }
        }
        if (batch.Position != Position) throw new InvalidOperationException($"prefetch order broken: expected {Position}, got {batch.Position}");
        Position = Advance(Position);
        return batch;
    }

    /// <summary>The position after <paramref name="p"/>.</summary>
    public DataPosition Advance(DataPosition p) => p.Batch + 1 < BatchesPerEpoch ? p with { Batch = p.Batch + 1 } : new DataPosition(p.Epoch + 1, 0);

    /// <summary>The augmentation key of the sample in <paramref name="slot"/> of epoch <paramref name="epoch"/>'s order.</summary>
    public static ulong AugmentKey(ulong seed, long epoch, int slot) => SplitMix.Keyed(seed, (ulong)epoch, (ulong)slot, 0xA11CEUL).Next();

    /// <summary>Makes batch <paramref name="p"/> directly (a pure function of seed and position; no queue involved).</summary>
    public Batch Make(DataPosition p) => Make(p, OrderOf(p.Epoch));

    private int[] OrderOf(long epoch) =>
        shuffle ? EpochOrder.Permutation(seed, epoch, data.Count) : Enumerable.Range(0, data.Count).ToArray();

    private Batch Make(DataPosition p, int[] order)
    {
        int s = data.ImageSize, c = data.Channels, per = c * s * s;
        var pixels = new float[checked(batchSize * per)];
        var labels = new long[batchSize];
        for (int i = 0; i < batchSize; i++)
        {
            int slot = p.Batch * batchSize + i;
            int index = order[slot];
            ulong key = AugmentKey(seed, p.Epoch, slot);
            data.Fill(index, key, pixels.AsSpan(i * per, per));
            labels[i] = data.Label(index);
        }
        return new Batch(pixels, labels, batchSize, c, s, p);
    }

    // Only one thread (the worker, or the caller without prefetch) ever calls this, so the order cache needs no lock.
    private Batch Make()
    {
        if (produce.Epoch != orderEpoch)
        {
            order = OrderOf(produce.Epoch);
            orderEpoch = produce.Epoch;
        }
        var b = Make(produce, order!);
        produce = Advance(produce);
        return b;
    }

    private void Work()
    {
        try
        {
            while (!stop.IsCancellationRequested) queue!.Add(Make(), stop.Token);
        }
        catch (OperationCanceledException) { }
        catch (Exception e)
        {
            workerError = e;
            queue!.CompleteAdding();
        }
    }

    private bool disposed;

    /// <summary>Stops the worker and frees the queue; safe to call more than once (a failing run disposes early).</summary>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        stop.Cancel();
        worker?.Join();
        queue?.Dispose();
        stop.Dispose();
    }
}
