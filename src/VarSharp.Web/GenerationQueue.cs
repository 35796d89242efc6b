using System.Diagnostics;
using System.Threading.Channels;
using VarSharp.Sampling;

namespace VarSharp.Web;

/// <summary>The queue is full: the client should come back later (HTTP 429).</summary>
public sealed class QueueFullException(int capacity)
    : Exception($"the server is busy: {capacity} request(s) are already waiting; try again shortly.")
{
    public int Capacity { get; } = capacity;
}

/// <summary>What a finished request gets back: its images in request order and how the time was spent.</summary>
public sealed record JobResult(IReadOnlyList<GeneratedImage> Images, double QueuedMs, double SampleMs, int BatchImages, int BatchRequests);

/// <summary>
/// One request in the queue. Dispose it when the request ends: a request that ends before its images (client gone,
/// timeout, a failed write) leaves the queue or its batch then, even if its token's callback never got to run.
/// </summary>
public sealed class GenerationJob : IDisposable
{
    internal enum JobState { Waiting, Running, Done }

    private CancellationTokenRegistration _registration;
    private Action<GenerationJob>? _onGone;

    internal GenerationJob(GenerationParams p, bool wantFrames, CancellationToken token)
    {
        Params = p;
        Token = token;
        Frames = wantFrames ? Channel.CreateUnbounded<ScaleFrame>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = false }) : null;
        Key = new BatchKey(p.Model.Name, p.Settings, p.Class is not null, wantFrames, p.Edit);
    }

    public GenerationParams Params { get; }

    /// <summary>The request's token: client gone, timeout or server stopping.</summary>
    public CancellationToken Token { get; }

    /// <summary>With frames requested: the request's images after every scale, as the batch samples them.</summary>
    public ChannelReader<ScaleFrame>? FrameReader => Frames?.Reader;

    /// <summary>Completes with the images, or is cancelled with <see cref="Token"/>, or fails with the batch's error.</summary>
    public Task<JobResult> Completion => CompletionSource.Task;

    internal Channel<ScaleFrame>? Frames { get; }
    internal TaskCompletionSource<JobResult> CompletionSource { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    internal BatchKey Key { get; }
    internal long EnqueuedAt { get; set; }
    internal JobState State { get; set; }
    internal Batch? Batch { get; set; }

    internal void Register(Action<GenerationJob> onGone)
    {
        _onGone = onGone;
        _registration = Token.Register(() => onGone(this));
    }

    /// <summary>
    /// Why the extra call: a cancelled token runs its callbacks one after another, so the request's handler (woken by an
    /// earlier callback on another thread) can dispose this registration before its own callback has run; without it
    /// the request would stay counted in its batch and the batch would never stop. The callback is idempotent.
    /// </summary>
    public void Dispose()
    {
        _registration.Dispose();
        _onGone?.Invoke(this);
    }
}

/// <summary>
/// Requests that may share a batch: same model, same sampler settings, all with a class or all drawing one, all
/// streaming or none, and the same edit (by reference: an edit request shares a batch only with itself, since a batch
/// teacher-forces one image).
/// </summary>
internal readonly record struct BatchKey(string Model, SamplerSettings Settings, bool ClassGiven, bool Frames, EditRequest? Edit);

/// <summary>Jobs sampled together. The batch is cancelled (between scales) only when every one of its requests is gone.</summary>
internal sealed class Batch : IDisposable
{
    private readonly CancellationTokenSource _cts;
    private int _live;

    public Batch(IReadOnlyList<GenerationJob> jobs, CancellationToken shutdown)
    {
        Jobs = jobs;
        _live = jobs.Count;
        _cts = CancellationTokenSource.CreateLinkedTokenSource(shutdown);
    }

    public IReadOnlyList<GenerationJob> Jobs { get; }
    public CancellationToken Token => _cts.Token;
    public int Rows => Jobs.Sum(j => j.Params.Count);

    public void MemberGone()
    {
        if (Interlocked.Decrement(ref _live) != 0) return;
        try
        {
            _cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The batch finished (and was disposed) while its last request was leaving: nothing left to stop.
        }
    }

    public void Dispose() => _cts.Dispose();
}

/// <summary>Counters since the server started, and the queue's state now.</summary>
public sealed record QueueStats(
    int Waiting, int Capacity, int RunningImages, long Accepted, long Rejected, long Completed, long Cancelled,
    long TimedOut, long Failed, long Batches, long BatchesCancelled, long Images);

/// <summary>
/// Coalesces concurrent requests into batches on one background thread. The first waiting request leads a batch and
/// waits up to <see cref="ServeOptions.BatchWindow"/> (from its arrival) for compatible requests (<see cref="BatchKey"/>)
/// to join, up to <see cref="ServeOptions.MaxBatch"/> images; requests are never split. Every image has its own
/// generator seeded from its request (seed + i), so a request's images do not depend on what it was batched with.
/// At most <see cref="ServeOptions.QueueCapacity"/> requests wait; more are refused (<see cref="QueueFullException"/>).
/// A request whose token is cancelled leaves the queue at once; a running batch stops between scales once all of its
/// requests are gone.
/// </summary>
public sealed class GenerationQueue : IDisposable
{
    private readonly object _gate = new();
    private readonly LinkedList<GenerationJob> _waiting = new();
    private readonly ServeOptions _options;
    private readonly CancellationTokenSource _shutdown = new();
    private readonly Thread _worker;
    private bool _stopping;
    private int _runningImages;
    private long _accepted, _rejected, _completed, _cancelled, _timedOut, _failed, _batches, _batchesCancelled, _images;

    /// <summary>
    /// Starts the batcher thread. It takes the <paramref name="models"/> it samples with so that a container creates
    /// them first and disposes them after the queue (whose disposal waits for the running batch).
    /// </summary>
    public GenerationQueue(ServeOptions options, ModelRegistry models)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(models);
        _options = options.Validate();
        _worker = new Thread(WorkerLoop) { IsBackground = true, Name = "varsharp-batcher" };
        _worker.Start();
    }

    /// <summary>Test hook: runs on the batcher thread before each batch, with the number of images in it.</summary>
    internal Action<int>? BeforeBatch { get; set; }

    /// <summary>Test hook: runs on the batcher thread after each scale of a streaming batch, with the scale index.</summary>
    internal Action<int>? AfterScale { get; set; }

    /// <summary>Adds a request; throws <see cref="QueueFullException"/> when <see cref="ServeOptions.QueueCapacity"/> requests already wait.</summary>
    public GenerationJob Enqueue(GenerationParams p, bool wantFrames, CancellationToken token)
    {
        ArgumentNullException.ThrowIfNull(p);
        var job = new GenerationJob(p, wantFrames, token);
        lock (_gate)
        {
            if (_stopping) throw new ObjectDisposedException(nameof(GenerationQueue));
            if (_waiting.Count >= _options.QueueCapacity)
            {
                Interlocked.Increment(ref _rejected);
                throw new QueueFullException(_options.QueueCapacity);
            }
            job.EnqueuedAt = Stopwatch.GetTimestamp();
            job.State = GenerationJob.JobState.Waiting;
            _waiting.AddLast(job);
            Interlocked.Increment(ref _accepted);
            Monitor.PulseAll(_gate);
        }
        job.Register(OnCancelled);
        return job;
    }

    /// <summary>Records that a request ended by its timeout rather than by its client.</summary>
    public void CountTimeout() => Interlocked.Increment(ref _timedOut);

    public QueueStats Stats()
    {
        lock (_gate)
            return new QueueStats(_waiting.Count, _options.QueueCapacity, _runningImages, Read(ref _accepted), Read(ref _rejected), Read(ref _completed),
                Read(ref _cancelled), Read(ref _timedOut), Read(ref _failed), Read(ref _batches), Read(ref _batchesCancelled), Read(ref _images));
    }

    private static long Read(ref long counter) => Interlocked.Read(ref counter);

    private void OnCancelled(GenerationJob job)
    {
        Batch? batch = null;
        lock (_gate)
        {
            if (job.State == GenerationJob.JobState.Done) return;
            if (job.State == GenerationJob.JobState.Waiting) _waiting.Remove(job);
            else batch = job.Batch;
            job.State = GenerationJob.JobState.Done;
            Interlocked.Increment(ref _cancelled);
            Monitor.PulseAll(_gate);
        }
        job.CompletionSource.TrySetCanceled(job.Token);
        job.Frames?.Writer.TryComplete();
        batch?.MemberGone();
    }

    private void WorkerLoop()
    {
        while (true)
        {
            Batch batch;
            lock (_gate)
            {
                while (!_stopping && _waiting.Count == 0) Monitor.Wait(_gate);
                if (_stopping) return;
                var leader = _waiting.First!.Value;
                long deadline = leader.EnqueuedAt + (long)(_options.BatchWindow.TotalSeconds * Stopwatch.Frequency);
                // An edit's key holds its own image, so nothing can join it: waiting would only delay it and the queue.
                while (leader.Key.Edit is null && !_stopping && leader.State == GenerationJob.JobState.Waiting && CompatibleImages(leader.Key) < _options.MaxBatch)
                {
                    long left = deadline - Stopwatch.GetTimestamp();
                    if (left <= 0) break;
                    Monitor.Wait(_gate, TimeSpan.FromSeconds((double)left / Stopwatch.Frequency));
                }
                if (_stopping) return;
                if (leader.State != GenerationJob.JobState.Waiting) continue;

                var jobs = new List<GenerationJob>();
                int rows = 0;
                for (var node = _waiting.First; node is not null;)
                {
                    var next = node.Next;
                    var job = node.Value;
                    if (job.Key == leader.Key && (jobs.Count == 0 || rows + job.Params.Count <= _options.MaxBatch))
                    {
                        jobs.Add(job);
                        rows += job.Params.Count;
                        _waiting.Remove(node);
                    }
                    node = next;
                }
                batch = new Batch(jobs, _shutdown.Token);
                foreach (var job in jobs)
                {
                    job.State = GenerationJob.JobState.Running;
                    job.Batch = batch;
                }
                _runningImages = rows;
                Interlocked.Increment(ref _batches);
            }
            using (batch) Run(batch);
        }
    }

    private int CompatibleImages(BatchKey key)
    {
        int rows = 0;
        foreach (var job in _waiting)
            if (job.Key == key) rows += job.Params.Count;
        return rows;
    }

    private void Run(Batch batch)
    {
        var jobs = batch.Jobs;
        var first = jobs[0];
        long started = Stopwatch.GetTimestamp();
        try
        {
            BeforeBatch?.Invoke(batch.Rows);
            batch.Token.ThrowIfCancellationRequested();
            var rows = new List<SampleRow>(batch.Rows);
            var offsets = new int[jobs.Count];
            for (int j = 0; j < jobs.Count; j++)
            {
                offsets[j] = rows.Count;
                var p = jobs[j].Params;
                for (int i = 0; i < p.Count; i++) rows.Add(new SampleRow(p.Class, p.Seed + i));
            }
            Action<ScaleFrame>? onFrame = first.Key.Frames ? frame =>
            {
                for (int j = 0; j < jobs.Count; j++)
                {
                    var png = frame.Png.Skip(offsets[j]).Take(jobs[j].Params.Count).ToArray();
                    jobs[j].Frames?.Writer.TryWrite(frame with { Png = png });
                }
                AfterScale?.Invoke(frame.ScaleIndex);
            } : null;

            var images = first.Params.Model.Pipeline.GenerateRows(rows, first.Params.Settings, onFrame, batch.Token, first.Params.Edit?.Edit);
            long ended = Stopwatch.GetTimestamp();
            double sampleMs = Stopwatch.GetElapsedTime(started, ended).TotalMilliseconds;
            Interlocked.Add(ref _images, images.Count);
            for (int j = 0; j < jobs.Count; j++)
            {
                var mine = images.Skip(offsets[j]).Take(jobs[j].Params.Count).Select((im, i) => im with { Index = i }).ToArray();
                double queuedMs = Stopwatch.GetElapsedTime(jobs[j].EnqueuedAt, started).TotalMilliseconds;
                if (!Finish(jobs[j])) continue;
                Interlocked.Increment(ref _completed);
                jobs[j].CompletionSource.TrySetResult(new JobResult(mine, queuedMs, sampleMs, images.Count, jobs.Count));
            }
        }
        catch (OperationCanceledException)
        {
            Interlocked.Increment(ref _batchesCancelled);
            foreach (var job in jobs)
                if (Finish(job))
                {
                    Interlocked.Increment(ref _cancelled);
                    job.CompletionSource.TrySetCanceled(batch.Token);
                }
        }
        catch (Exception e)
        {
            foreach (var job in jobs)
                if (Finish(job))
                {
                    Interlocked.Increment(ref _failed);
                    job.CompletionSource.TrySetException(e);
                }
        }
        finally
        {
            foreach (var job in jobs) job.Frames?.Writer.TryComplete();
            lock (_gate) _runningImages = 0;
        }
    }

    /// <summary>Marks a running job done; false when it was already cancelled (its client is gone).</summary>
    private bool Finish(GenerationJob job)
    {
        lock (_gate)
        {
            if (job.State == GenerationJob.JobState.Done) return false;
            job.State = GenerationJob.JobState.Done;
            return true;
        }
    }

    public void Dispose()
    {
        List<GenerationJob> left;
        lock (_gate)
        {
            if (_stopping) return;
            _stopping = true;
            left = [.. _waiting];
            _waiting.Clear();
            Monitor.PulseAll(_gate);
        }
        foreach (var job in left)
        {
            job.CompletionSource.TrySetException(new ObjectDisposedException(nameof(GenerationQueue), "the server is stopping."));
            job.Frames?.Writer.TryComplete();
        }
        _shutdown.Cancel();
        // Without a time limit: the models are disposed after this returns, and a batch still decoding its last scale
        // must not outlive them (cancellation stops sampling between scales, so this ends).
        _worker.Join();
        _shutdown.Dispose();
    }
}
