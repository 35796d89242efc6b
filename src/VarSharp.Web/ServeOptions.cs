using System.Globalization;
using System.Text.RegularExpressions;
using VarSharp.Checkpoints;

namespace VarSharp.Web;

/// <summary>A model to serve: the name clients use, and the bundle folder it is loaded from (never shown to clients).</summary>
public sealed record ModelSource(string Name, string Directory)
{
    /// <summary>
    /// Parses <c>NAME=DIR</c>, or a bare <c>DIR</c> named after its last folder. Names are letters, digits, '.', '_' and
    /// '-' so that a request never carries anything path-like.
    /// </summary>
    public static ModelSource Parse(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        int eq = value.IndexOf('=', StringComparison.Ordinal);
        string name, dir;
        if (eq >= 0)
        {
            name = value[..eq].Trim();
            dir = value[(eq + 1)..].Trim();
        }
        else
        {
            dir = value.Trim();
            name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)));
        }
        if (dir.Length == 0) throw new VarSharpException($"--model '{value}' names no folder; expected NAME=DIR or DIR.");
        CheckName(name);
        return new ModelSource(name, dir);
    }

    internal static void CheckName(string name)
    {
        if (!ServeOptions.ModelNamePattern().IsMatch(name))
            throw new VarSharpException($"model name '{name}' is not usable: use 1 to 64 letters, digits, '.', '_' or '-'.");
    }
}

/// <summary>What <c>varsharp serve</c> runs: models, address, and the limits of the batching queue.</summary>
public sealed partial record ServeOptions
{
    public const string DefaultUrls = "http://127.0.0.1:5080";

    /// <summary>The model folder served when none is named, relative to the working directory or to the app's repository.</summary>
    public const string DefaultModelPath = BundledModels.Generator;

    /// <summary>Address(es) to listen on, separated by ';' (port 0 picks a free port).</summary>
    public string Urls { get; init; } = DefaultUrls;

    /// <summary>Models to load, by name. The first is the default for requests that name none.</summary>
    public IReadOnlyList<ModelSource> Models { get; init; } = [];

    /// <summary>When set, every model must be a bundle signed by one of these keys (<see cref="BundleSignature"/>).</summary>
    public BundleTrust? Trust { get; init; }

    /// <summary>Where the models are loaded and sampled (null: the CPU).</summary>
    public TorchSharp.torch.Device? Device { get; init; }

    /// <summary>The transformers' number type (float32 unless given).</summary>
    public TorchSharp.torch.ScalarType Dtype { get; init; } = TorchSharp.torch.ScalarType.Float32;

    /// <summary>The most images one request may ask for.</summary>
    public int MaxCount { get; init; } = 16;

    /// <summary>The most images sampled together in one batch (a larger single request runs as its own batch).</summary>
    public int MaxBatch { get; init; } = 32;

    /// <summary>How long the first request of a batch waits for compatible requests to join it.</summary>
    public TimeSpan BatchWindow { get; init; } = TimeSpan.FromMilliseconds(10);

    /// <summary>Requests waiting for a batch beyond this are refused with 429 (the batch being sampled does not count).</summary>
    public int QueueCapacity { get; init; } = 64;

    /// <summary>
    /// Host names (besides IP addresses and localhost) the server answers to; "*" takes any. Others are refused, which
    /// stops DNS rebinding (<see cref="RequestGuard"/>).
    /// </summary>
    public IReadOnlyList<string> AllowedHosts { get; init; } = [];

    /// <summary>Origins (scheme://host[:port]) whose pages may call the API from a browser besides the server's own; "*" takes any.</summary>
    public IReadOnlyList<string> AllowedOrigins { get; init; } = [];

    /// <summary>The largest <see cref="RequestTimeout"/> taken (a day; timers take at most about 49 days).</summary>
    public static readonly TimeSpan MaxRequestTimeout = TimeSpan.FromDays(1);

    /// <summary>The longest a request may take, queue wait included; past it the request gets 503.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>Throws a one-sentence <see cref="VarSharpException"/> for unusable settings.</summary>
    public ServeOptions Validate()
    {
        if (Models.Count == 0) throw new VarSharpException("no model to serve: name one with --model NAME=DIR.");
        foreach (var m in Models) ModelSource.CheckName(m.Name);
        var dup = Models.GroupBy(m => m.Name, StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new VarSharpException($"model name '{dup.Key}' is given twice; give each --model its own NAME=.");
        if (MaxCount < 1) throw new VarSharpException($"the per-request image cap must be at least 1, found {MaxCount}.");
        if (MaxBatch < 1) throw new VarSharpException($"the batch size must be at least 1, found {MaxBatch}.");
        // Every request waits in the queue before a batch takes it, even on an idle server, so 0 would refuse them all.
        if (QueueCapacity < 1) throw new VarSharpException($"the queue capacity must be at least 1, found {QueueCapacity}.");
        if (BatchWindow < TimeSpan.Zero || BatchWindow > TimeSpan.FromSeconds(10))
            throw new VarSharpException($"the batch window must be between 0 and 10 s, found {BatchWindow.TotalMilliseconds} ms.");
        if (RequestTimeout <= TimeSpan.Zero || RequestTimeout > MaxRequestTimeout)
            throw new VarSharpException($"the request timeout must be positive and at most {MaxRequestTimeout.TotalSeconds:0} s, found {RequestTimeout.TotalSeconds} s.");
        foreach (var h in AllowedHosts)
            if (h != "*" && Uri.CheckHostName(h) == UriHostNameType.Unknown)
                throw new VarSharpException($"'{h}' is not a host name; give --allowed-host a name such as varsharp.example.org, or * for any.");
        foreach (var origin in AllowedOrigins)
            if (origin != "*" && !(Uri.TryCreate(origin, UriKind.Absolute, out var u) && u.Scheme is "http" or "https"
                                   && u.GetLeftPart(UriPartial.Authority).Equals(origin.TrimEnd('/'), StringComparison.OrdinalIgnoreCase) && !origin.EndsWith('/')))
                throw new VarSharpException($"'{origin}' is not an origin; give --allow-origin a scheme, host and optional port such as http://localhost:3000, or * for any.");
        if (string.IsNullOrWhiteSpace(Urls)) throw new VarSharpException("no address to listen on.");
        foreach (var url in Urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            // Kestrel also takes http://*:5080 and http://+:5080, which are not URIs; check what follows the scheme.
            if (url.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
                throw new VarSharpException($"'{url}' asks for HTTPS, which serve does not configure (no certificate); listen on http:// and put a TLS proxy in front.");
            string rest = url.StartsWith("http://", StringComparison.OrdinalIgnoreCase) ? url[7..] : "";
            var hostPort = rest.Split('/')[0];
            int colon = hostPort.LastIndexOf(':');
            bool ok = rest.Length > 0 && colon > 0 && hostPort[..colon].Length > 0
                && int.TryParse(hostPort[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int port) && port is >= 0 and <= 65535;
            if (!ok) throw new VarSharpException($"'{url}' is not an address to listen on; give one like http://127.0.0.1:5080.");
            // Kestrel listens on every interface for a host it cannot read as an IP address; a typo must not expose the
            // server, so only IP addresses, localhost and the explicit wildcards * and + are taken.
            var host = hostPort[..colon].Trim('[', ']');
            if (host is not ("localhost" or "*" or "+") && !System.Net.IPAddress.TryParse(host, out _))
                throw new VarSharpException(
                    $"'{host}' in '{url}' is not an IP address or localhost; Kestrel would listen on every interface for it, so give an address (127.0.0.1, or 0.0.0.0 for all).");
        }
        return this;
    }

    /// <summary><see cref="DefaultModelPath"/> where <see cref="BundledModels.Find"/> finds it, else null.</summary>
    public static string? FindDefaultModel() => BundledModels.Find(DefaultModelPath);

    [GeneratedRegex("^[A-Za-z0-9._-]{1,64}$")]
    internal static partial Regex ModelNamePattern();
}
