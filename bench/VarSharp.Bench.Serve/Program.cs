using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using VarSharp.Web;

// Load benchmark of `varsharp serve`, in one process: the server on a free loopback port (127.0.0.1:0) and an HTTP
// client hammering it. Bounded in requests and time; stops by itself. Phases:
//   1. throughput: R rounds of N POST /v1/generate (count 1, classes and seeds varied) from C concurrent clients; RSS
//      after each round shows whether memory grows;
//   2. streaming: SSE requests, each read to its done event;
//   3. overload: a server with a tiny queue and far more concurrent clients than it accepts: 429s, no 5xx.
// Exit 0 only when no request failed (transport error or 5xx) and the overload phase produced 429s.
//
//   dotnet run --project bench/VarSharp.Bench.Serve -c Release -- [--model DIR] [--requests 200] [--concurrency 16] [--rounds 3] [--max-batch 32]

var args_ = Args.Parse(args);
var modelDir = args_.Model ?? FindModel() ?? throw new InvalidOperationException("no model: pass --model DIR (e.g. ../shared/golden/tiny-32)");
var inv = CultureInfo.InvariantCulture;
Console.WriteLine($"model {modelDir}; {args_.Rounds} rounds of {args_.Requests} requests at concurrency {args_.Concurrency}, max batch {args_.MaxBatch}; {Environment.ProcessorCount} cores");

var failures = 0;
var memoryGrew = false;
var deadline = Stopwatch.StartNew();

// ---- phases 1 and 2 on a server with default limits ----
await using (var app = StartServer(new ServeOptions { Urls = "http://127.0.0.1:0", Models = [new ModelSource("bench", modelDir)], MaxBatch = args_.MaxBatch }))
{
    var url = app.Urls.Single();
    var models = app.Services.GetRequiredService<ModelRegistry>();
    int numClasses = models.Default.NumClasses;
    var queue = app.Services.GetRequiredService<GenerationQueue>();
    using var http = Client(url, args_.Concurrency);

    await Run(http, 16, 8, i => Post(http, i, numClasses));                          // warm-up
    var rss = new List<long> { Rss() };
    var before = queue.Stats();
    for (int round = 1; round <= args_.Rounds; round++)
    {
        int offset = round * 10_000;
        var r = await Run(http, args_.Requests, args_.Concurrency, i => Post(http, offset + i, numClasses));
        var after = queue.Stats();
        rss.Add(Rss());
        Report($"round {round}", r, (after.Images - before.Images) / Math.Max(1.0, after.Batches - before.Batches), rss[^1]);
        failures += r.Failures;
        before = after;
    }
    var rs = await Run(http, args_.Requests / 4, args_.Concurrency, i => Stream(http, 90_000 + i, numClasses));
    rss.Add(Rss());
    Report("stream", rs, double.NaN, rss[^1]);
    failures += rs.Failures;
    Console.WriteLine(string.Create(inv,
        $"RSS MiB after warm-up {Mb(rss[0]):F0}; after each round {string.Join(", ", rss.Skip(1).SkipLast(1).Select(b => Mb(b).ToString("F0", inv)))}; after streams {Mb(rss[^1]):F0}; last round vs first: {Mb(rss[^2] - rss[1]):+0;-0;0}"));
    // Round 1 settles the allocators; from there on memory must not keep growing with the number of requests.
    long growth = rss[^2] - rss[1], limit = Math.Max(128L << 20, rss[1] / 4);
    memoryGrew = args_.Rounds >= 2 && growth > limit;
    Console.WriteLine(string.Create(inv,
        $"memory: {(memoryGrew ? "GREW" : "steady")} (last round vs first {Mb(growth):+0;-0;0} MiB, limit {Mb(limit):F0} MiB)"));
    Console.WriteLine($"server counters: {JsonSerializer.Serialize(queue.Stats(), ApiJson.Options)}");
}

// ---- phase 3: overload against a tiny queue ----
var overloadOptions = new ServeOptions
{
    Urls = "http://127.0.0.1:0", Models = [new ModelSource("bench", modelDir)], QueueCapacity = 4, MaxBatch = 4,
};
int tooMany;
await using (var app = StartServer(overloadOptions))
{
    var url = app.Urls.Single();
    var queue = app.Services.GetRequiredService<GenerationQueue>();
    int numClasses = app.Services.GetRequiredService<ModelRegistry>().Default.NumClasses;
    int concurrency = args_.Concurrency * 4;
    using var http = Client(url, concurrency);
    long rssBefore = Rss();
    var ro = await Run(http, args_.Requests, concurrency, i => Post(http, 9000 + i, numClasses));
    Report("overload", ro, double.NaN, Rss());
    tooMany = ro.Statuses.GetValueOrDefault(429);
    failures += ro.Failures;
    Console.WriteLine(string.Create(inv,
        $"overload: queue {overloadOptions.QueueCapacity}, max batch {overloadOptions.MaxBatch}, {concurrency} concurrent clients -> {tooMany} x 429, {ro.Statuses.Where(kv => kv.Key >= 500).Sum(kv => kv.Value)} x 5xx; RSS {Mb(rssBefore):F0} -> {Mb(Rss()):F0} MiB"));
    Console.WriteLine($"server counters: {JsonSerializer.Serialize(queue.Stats(), ApiJson.Options)}");
}

Console.WriteLine(string.Create(inv, $"total {deadline.Elapsed.TotalSeconds:F1} s; failures (transport errors or 5xx): {failures}"));
if (tooMany == 0) Console.WriteLine("overload produced no 429: the queue limit was not exercised");
if (memoryGrew) Console.WriteLine("resident memory grew from round to round: a leak to look for");
return failures == 0 && tooMany > 0 && !memoryGrew ? 0 : 1;

// ---------------------------------------------------------------------------------------------------------------

static WebApplication StartServer(ServeOptions options)
{
    var app = VarServer.Build(options);
    app.StartAsync().GetAwaiter().GetResult();
    return app;
}

static HttpClient Client(string url, int connections) => new(new SocketsHttpHandler { MaxConnectionsPerServer = connections, PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
{
    BaseAddress = new Uri(url),
    Timeout = TimeSpan.FromSeconds(120),
};

static async Task<int> Post(HttpClient http, int i, int numClasses)
{
    using var body = new StringContent($$"""{"class": {{i % numClasses}}, "seed": {{i}}}""", Encoding.UTF8, "application/json");
    using var response = await http.PostAsync("/v1/generate", body);
    await response.Content.ReadAsByteArrayAsync();
    return (int)response.StatusCode;
}

static async Task<int> Stream(HttpClient http, int i, int numClasses)
{
    using var response = await http.GetAsync($"/v1/generate/stream?class={i % numClasses}&seed={i}", HttpCompletionOption.ResponseHeadersRead);
    if (response.StatusCode != HttpStatusCode.OK) return (int)response.StatusCode;
    using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
    bool done = false;
    while (await reader.ReadLineAsync() is { } line)
        if (line == "event: done") done = true;
    return done ? 200 : 599;   // a stream that ended without its done event counts as a failure
}

static async Task<Result> Run(HttpClient http, int n, int concurrency, Func<int, Task<int>> send)
{
    var latencies = new double[n];
    var statuses = new int[n];
    int next = -1, errors = 0;
    var wall = Stopwatch.StartNew();
    var workers = Enumerable.Range(0, concurrency).Select(async _ =>
    {
        int i;
        while ((i = Interlocked.Increment(ref next)) < n)
        {
            long t0 = Stopwatch.GetTimestamp();
            try
            {
                statuses[i] = await send(i);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
            {
                Interlocked.Increment(ref errors);
                statuses[i] = -1;
            }
            latencies[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
    }).ToArray();
    await Task.WhenAll(workers);
    wall.Stop();
    var ok = Enumerable.Range(0, n).Where(i => statuses[i] == 200).Select(i => latencies[i]).Order().ToArray();
    var counts = statuses.GroupBy(s => s).ToDictionary(g => g.Key, g => g.Count());
    int failures = errors + statuses.Count(s => s >= 500);
    return new Result(n, wall.Elapsed.TotalSeconds, ok, counts, failures);
}

static void Report(string name, Result r, double avgBatch, long rss)
{
    var inv = CultureInfo.InvariantCulture;
    string Pct(double p) => r.OkLatencies.Length == 0 ? "-" : r.OkLatencies[Math.Min(r.OkLatencies.Length - 1, (int)Math.Ceiling(p * r.OkLatencies.Length) - 1)].ToString("F0", inv);
    var statuses = string.Join(", ", r.Statuses.OrderBy(kv => kv.Key).Select(kv => $"{(kv.Key < 0 ? "error" : kv.Key.ToString(inv))}: {kv.Value}"));
    var batch = double.IsNaN(avgBatch) ? "" : string.Create(inv, $"; mean batch {avgBatch:F1} images");
    Console.WriteLine(string.Create(inv,
        $"{name}: {r.Requests} requests in {r.Seconds:F2} s -> {r.OkLatencies.Length / r.Seconds:F1} images/s; latency ms p50 {Pct(0.5)}, p90 {Pct(0.9)}, p99 {Pct(0.99)}, max {Pct(1.0)}; statuses {{{statuses}}}{batch}; RSS {Mb(rss):F0} MiB"));
}

static long Rss()
{
    GC.Collect();
    GC.WaitForPendingFinalizers();
    GC.Collect();
    foreach (var line in File.ReadLines("/proc/self/status"))
        if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    return Environment.WorkingSet;
}

static double Mb(long bytes) => bytes / (1024.0 * 1024.0);

static string? FindModel()
{
    foreach (var candidate in new[] { ServeOptions.FindDefaultModel(), "../shared/golden/tiny-32" })
        if (candidate is not null && Directory.Exists(candidate)) return Path.GetFullPath(candidate);
    return null;
}

internal sealed record Result(int Requests, double Seconds, double[] OkLatencies, Dictionary<int, int> Statuses, int Failures);

internal sealed record Args(string? Model, int Requests, int Concurrency, int Rounds, int MaxBatch)
{
    public static Args Parse(string[] argv)
    {
        string? model = null;
        int requests = 200, concurrency = 16, rounds = 3, maxBatch = new ServeOptions().MaxBatch;
        for (int i = 0; i < argv.Length; i++)
        {
            string Next() => i + 1 < argv.Length ? argv[++i] : throw new ArgumentException($"{argv[i]} needs a value");
            switch (argv[i])
            {
                case "--model": model = Next(); break;
                case "--requests": requests = Math.Clamp(int.Parse(Next(), CultureInfo.InvariantCulture), 1, 5000); break;
                case "--concurrency": concurrency = Math.Clamp(int.Parse(Next(), CultureInfo.InvariantCulture), 1, 256); break;
                case "--rounds": rounds = Math.Clamp(int.Parse(Next(), CultureInfo.InvariantCulture), 1, 20); break;
                case "--max-batch": maxBatch = Math.Clamp(int.Parse(Next(), CultureInfo.InvariantCulture), 1, 256); break;
                default: throw new ArgumentException($"unknown option {argv[i]}; expected --model DIR, --requests N, --concurrency C, --rounds R, --max-batch B");
            }
        }
        return new Args(model, requests, concurrency, rounds, maxBatch);
    }
}
