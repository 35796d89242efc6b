using System.CommandLine;
using VarSharp.Web;

namespace VarSharp.Cli.Commands;

/// <summary>`serve`: the generation server and its page (VarSharp.Web). Options only; the server is the web project's.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var defaults = new ServeOptions();
        var models = new Option<string[]>("--model", "-m")
        {
            Description = $"Model to serve, NAME=DIR (or DIR, named after its folder); repeat for more. The first is the default. " +
                          $"Default: {ServeOptions.DefaultModelPath} when it exists",
        };
        var urls = new Option<string>("--urls", "--address")
        {
            Description = "Address(es) to listen on, ';'-separated (port 0 picks a free one)",
            DefaultValueFactory = _ => ServeOptions.DefaultUrls,
        };
        var maxCount = new Option<int>("--max-count") { Description = "Most images one request may ask for", DefaultValueFactory = _ => defaults.MaxCount };
        var maxBatch = new Option<int>("--max-batch") { Description = "Most images sampled together (requests are coalesced up to it)", DefaultValueFactory = _ => defaults.MaxBatch };
        var window = new Option<double>("--batch-window-ms") { Description = "How long a batch waits for compatible requests to join", DefaultValueFactory = _ => defaults.BatchWindow.TotalMilliseconds };
        var queue = new Option<int>("--queue") { Description = "Requests that may wait; beyond it the server answers 429", DefaultValueFactory = _ => defaults.QueueCapacity };
        var timeout = new Option<double>("--timeout") { Description = "Seconds a request may take, queue wait included (then 503)", DefaultValueFactory = _ => defaults.RequestTimeout.TotalSeconds };
        var trust = TrustOption.Create("Only serve bundles signed by this public key (repeatable)");
        var allowedHosts = new Option<string[]>("--allowed-host")
        {
            Description = "A host name the server answers to besides IP addresses and localhost (repeatable; * for any). Others are refused, against DNS rebinding",
        };
        var allowOrigins = new Option<string[]>("--allow-origin")
        {
            Description = "An origin (scheme://host[:port]) whose web pages may call the API besides the server's own page (repeatable; * for any)",
        };
        var threads = LongRun.ThreadsOption();
        var device = DeviceOption.Create();
        var dtype = DeviceOption.CreateDtype();
        var command = new Command("serve", "Serve a web page and an HTTP API that generate images, streaming every scale")
        {
            models, urls, maxCount, maxBatch, window, queue, timeout, trust, allowedHosts, allowOrigins, threads, device, dtype,
        };
        command.SetAction(parse =>
        {
            LongRun.SetThreads(parse.GetValue(threads));
            var sources = (parse.GetValue(models) ?? []).Select(ModelSource.Parse).ToList();
            if (sources.Count == 0)
            {
                var found = ServeOptions.FindDefaultModel()
                    ?? throw new VarSharpException($"no model to serve: {ServeOptions.DefaultModelPath} was not found; name one with --model NAME=DIR.");
                sources.Add(new ModelSource(Path.GetFileName(found), found));
            }
            double windowMs = parse.GetValue(window), timeoutS = parse.GetValue(timeout);
            if (!(windowMs >= 0 && windowMs <= 10_000)) throw new VarSharpException($"--batch-window-ms must be between 0 and 10000, found {windowMs}.");
            if (!(timeoutS > 0 && timeoutS <= 86_400)) throw new VarSharpException($"--timeout must be more than 0 and at most 86400 seconds, found {timeoutS}.");
            var options = new ServeOptions
            {
                Urls = parse.GetRequiredValue(urls),
                Models = sources,
                MaxCount = parse.GetValue(maxCount),
                MaxBatch = parse.GetValue(maxBatch),
                BatchWindow = TimeSpan.FromMilliseconds(windowMs),
                QueueCapacity = parse.GetValue(queue),
                RequestTimeout = TimeSpan.FromSeconds(timeoutS),
                Trust = TrustOption.Of(parse.GetValue(trust)),
                AllowedHosts = parse.GetValue(allowedHosts) ?? [],
                AllowedOrigins = parse.GetValue(allowOrigins) ?? [],
                Device = DeviceOption.Of(parse, device),
                Dtype = DeviceOption.DtypeOf(parse, dtype),
            }.Validate();

            VarServer.Run(options, parse.InvocationConfiguration.Output);
            return 0;
        });
        return command;
    }
}
