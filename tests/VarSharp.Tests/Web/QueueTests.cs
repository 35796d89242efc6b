using System.Net;
using Microsoft.Extensions.DependencyInjection;
using VarSharp.Web;
using VarSharp.Sampling;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Web;

/// <summary>
/// The batching queue through HTTP: coalescing, 429 when full, cancellation (queued and mid-sampling), timeouts. The
/// queue's test hooks hold the batcher thread so that each situation is set up deterministically.
/// </summary>
public sealed class QueueTests(TinyModelFolderFixture model) : IClassFixture<TinyModelFolderFixture>
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task CompatibleRequestsShareABatchAndGetTheirOwnImages()
    {
        using var server = VarServerFactory.ForModel(model.Dir, o => o with { MaxBatch = 8 });
        using var gate = new ManualResetEventSlim();
        using var entered = new SemaphoreSlim(0);
        server.Queue.BeforeBatch = _ => { entered.Release(); gate.Wait(Long); };
        using var client = server.CreateClient();

        var first = client.Generate("""{"class": 0, "seed": 1}""");
        Assert.True(await entered.WaitAsync(Long));
        var a = client.Generate("""{"class": 1, "count": 2, "seed": 20}""");
        var b = client.Generate("""{"class": 4, "seed": 30}""");
        var other = client.Generate("""{"class": 4, "seed": 30, "cfg": 1}""");   // other settings: its own batch
        await VarServerFactory.Eventually(() => server.Queue.Stats().Waiting == 3, "three waiting requests");
        gate.Set();

        var timings = new List<(int Images, int Requests)>();
        var bodies = new List<System.Text.Json.JsonElement>();
        foreach (var t in new[] { first, a, b, other })
        {
            using var r = await t;
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            bodies.Add(await r.ReadJson());
            var timing = bodies[^1].GetProperty("timing");
            timings.Add((timing.GetProperty("batch_images").GetInt32(), timing.GetProperty("batch_requests").GetInt32()));
        }
        Assert.Equal([(1, 1), (3, 2), (3, 2), (1, 1)], timings);
        Assert.Equal(3, server.Queue.Stats().Batches);

        // Batched or not, a request's images are the library's images for its own seeds.
        using var pipe = VarPipeline.Load(model.Dir);
        using var again = await client.Generate("""{"class": 1, "count": 2, "seed": 20}""");
        var expected = pipe.Generate(new SampleOptions { Classes = [1], Count = 2, Seed = 20 });
        var images = (await again.ReadJson()).GetProperty("images");
        Assert.Equal(expected.Select(e => e.Png), images.EnumerateArray().Select(i => i.Png()));
        Assert.Equal(expected.Select(e => e.Png), bodies[1].GetProperty("images").EnumerateArray().Select(i => i.Png()));
    }

    [Fact]
    public async Task AFullQueueAnswers429WithRetryAfterAndNothingFails()
    {
        using var server = VarServerFactory.ForModel(model.Dir, o => o with { QueueCapacity = 1, MaxBatch = 1 });
        using var gate = new ManualResetEventSlim();
        using var entered = new SemaphoreSlim(0);
        server.Queue.BeforeBatch = _ => { entered.Release(); gate.Wait(Long); };
        using var client = server.CreateClient();

        var running = client.Generate("""{"class": 1, "seed": 1}""");
        Assert.True(await entered.WaitAsync(Long));
        var waiting = client.Generate("""{"class": 2, "seed": 2}""");
        await VarServerFactory.Eventually(() => server.Queue.Stats().Waiting == 1, "one waiting request");

        using (var refused = await client.Generate("""{"class": 3, "seed": 3}"""))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.Equal(TimeSpan.FromSeconds(1), refused.Headers.RetryAfter!.Delta);
            Assert.StartsWith("the server is busy: 1 request(s) are already waiting", (await refused.ReadJson()).GetProperty("error").GetString(), StringComparison.Ordinal);
        }
        using (var refusedStream = await client.GetAsync("/v1/generate/stream?class=3"))
            Assert.Equal(HttpStatusCode.TooManyRequests, refusedStream.StatusCode);

        gate.Set();
        using (var r1 = await running) Assert.Equal(HttpStatusCode.OK, r1.StatusCode);
        using (var r2 = await waiting) Assert.Equal(HttpStatusCode.OK, r2.StatusCode);
        var stats = server.Queue.Stats();
        Assert.Equal((2L, 2L, 2L, 0L), (stats.Rejected, stats.Accepted, stats.Completed, stats.Failed));
    }

    [Fact]
    public async Task AClientThatLeavesWhileQueuedIsDroppedBeforeSampling()
    {
        using var server = VarServerFactory.ForModel(model.Dir, o => o with { MaxBatch = 1 });
        using var gate = new ManualResetEventSlim();
        using var entered = new SemaphoreSlim(0);
        server.Queue.BeforeBatch = _ => { entered.Release(); gate.Wait(Long); };
        using var client = server.CreateClient();

        var running = client.Generate("""{"class": 1, "seed": 1}""");
        Assert.True(await entered.WaitAsync(Long));
        using var leave = new CancellationTokenSource();
        var abandoned = client.Generate("""{"class": 2, "seed": 2}""", leave.Token);
        await VarServerFactory.Eventually(() => server.Queue.Stats().Waiting == 1, "the second request to wait");
        await leave.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned);
        await VarServerFactory.Eventually(() => server.Queue.Stats() is { Cancelled: 1, Waiting: 0 }, "the server to drop the request");

        gate.Set();
        using (var r = await running) Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var stats = server.Queue.Stats();
        Assert.Equal((1L, 1L, 1L), (stats.Batches, stats.Images, stats.Completed));
    }

    [Fact]
    public async Task AClientThatLeavesMidStreamStopsItsBatchBetweenScales()
    {
        using var server = VarServerFactory.ForModel(model.Dir);
        using var release = new ManualResetEventSlim();
        int scalesRun = 0;
        server.Queue.AfterScale = si =>
        {
            Interlocked.Increment(ref scalesRun);
            if (si == 0) release.Wait(Long);
        };
        using var client = server.CreateClient();
        using var leave = new CancellationTokenSource();
        using var response = await client.GetAsync("/v1/generate/stream?class=3&seed=1", HttpCompletionOption.ResponseHeadersRead, leave.Token);
        await using (var e = response.ReadEvents().GetAsyncEnumerator(leave.Token))
        {
            Assert.True(await e.MoveNextAsync());
            Assert.Equal("start", e.Current.Event);
            Assert.True(await e.MoveNextAsync());
            Assert.Equal(("scale", 0), (e.Current.Event, e.Current.Data.GetProperty("index").GetInt32()));
            await leave.CancelAsync();
        }
        response.Dispose();
        await VarServerFactory.Eventually(() => server.Queue.Stats().Cancelled == 1, "the server to see the client leave");
        release.Set();
        await VarServerFactory.Eventually(() => server.Queue.Stats().BatchesCancelled == 1, "the batch to stop");
        var stats = server.Queue.Stats();
        Assert.Equal((0L, 0L, 1), (stats.Images, stats.Completed, scalesRun));
    }

    [Fact]
    public async Task AJobDisposedBeforeItsCancellationCallbackRanStillLeavesItsBatch()
    {
        // A cancelled token runs its callbacks one after another (newest first); a handler woken by an earlier one can
        // dispose its job before the queue's own callback has run. The job must still leave its batch.
        using var server = VarServerFactory.ForModel(model.Dir);
        using var release = new ManualResetEventSlim();
        using var running = new SemaphoreSlim(0);
        server.Queue.BeforeBatch = _ => { running.Release(); release.Wait(Long); };
        var served = server.Services.GetRequiredService<ModelRegistry>().Default;
        var p = new GenerationParams(served, 1, 1, 1.0, 0, 0.0, 7, false);

        using var leave = new CancellationTokenSource();
        var job = server.Queue.Enqueue(p, wantFrames: false, leave.Token);
        Assert.True(await running.WaitAsync(Long));
        leave.Token.Register(job.Dispose);        // registered last, so it runs before the queue's callback
        await leave.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => job.Completion);
        Assert.Equal(1L, server.Queue.Stats().Cancelled);

        release.Set();
        await VarServerFactory.Eventually(() => server.Queue.Stats().BatchesCancelled == 1, "the batch to stop");
        Assert.Equal((0L, 0L), (server.Queue.Stats().Images, server.Queue.Stats().Completed));
    }

    [Fact]
    public async Task ARequestPastItsTimeoutGets503AndItsBatchIsDropped()
    {
        using var server = VarServerFactory.ForModel(model.Dir, o => o with { RequestTimeout = TimeSpan.FromMilliseconds(300) });
        using var gate = new ManualResetEventSlim();
        server.Queue.BeforeBatch = _ => gate.Wait(Long);
        using var client = server.CreateClient();

        using (var late = await client.Generate("""{"class": 1, "seed": 1}"""))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, late.StatusCode);
            Assert.StartsWith("the request timed out after 0.3 s", (await late.ReadJson()).GetProperty("error").GetString(), StringComparison.Ordinal);
        }
        gate.Set();
        await VarServerFactory.Eventually(() => server.Queue.Stats().BatchesCancelled == 1, "the abandoned batch to be dropped");
        var stats = server.Queue.Stats();
        Assert.Equal((1L, 0L, 0L), (stats.TimedOut, stats.Images, stats.Failed));
    }
}
