using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.OpenApi;

namespace VarSharp.Web;

/// <summary>
/// Builds the generation server: models loaded (manifests verified) before it listens, a batching queue, the API and
/// the page. <c>varsharp serve</c> is <c>VarServer.Build(options).Run()</c>.
/// </summary>
public sealed class VarServer
{
    private VarServer()
    {
    }

    /// <summary>A ready-to-run app listening on <see cref="ServeOptions.Urls"/>. Throws a one-sentence <see cref="VarSharpException"/> if a model cannot be loaded.</summary>
    public static WebApplication Build(ServeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.WebHost.UseUrls(options.Urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        builder.WebHost.ConfigureKestrel(k => k.AddServerHeader = false);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        // A failed start (address in use) is reported by Run as one sentence; the host's own log of it, a stack trace, is
        // held back until the server has started. Host errors after that are logged as usual.
        var start = new StartGate();
        builder.Logging.AddFilter((category, level) =>
            start.Started || category != "Microsoft.Extensions.Hosting.Internal.Host" || level >= LogLevel.Critical);
        builder.Services.AddSingleton(start);
        builder.Services.AddVarServer(options);
        var app = builder.Build();
        app.UseVarServerRequestGuard();
        app.UseVarServerStatusErrors();
        app.MapVarServer();
        return app;
    }

    /// <summary>Builds, starts, prints what is served and where to <paramref name="output"/>, and runs until Ctrl+C / SIGTERM.</summary>
    public static void Run(ServeOptions options, TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(output);
        using var app = Build(options);
        try
        {
            app.Start();
            app.Services.GetRequiredService<StartGate>().Started = true;
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            // Address in use, or not an address of this machine: the user's to fix, so one sentence, no stack trace.
            throw new VarSharpException($"cannot listen on {options.Urls}: {(e.InnerException ?? e).Message.TrimEnd('.').ToLowerInvariant()}.", e);
        }
        foreach (var m in app.Services.GetRequiredService<ModelRegistry>().Models)
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"model '{m.Name}': {m.ImageSize}x{m.ImageSize}, {m.NumClasses} classes, {m.PatchNums.Count} scales ({string.Join(",", m.PatchNums)})"));
        foreach (var url in app.Urls)
            output.WriteLine($"serving on {url}  (page /, API /v1/generate, /v1/generate/stream, /v1/models, /healthz, OpenAPI /openapi/v1.json; Ctrl+C stops)");
        app.WaitForShutdown();
    }
}

public static class VarServerServices
{
    /// <summary>Registers the models (loaded now, so a bad folder fails before the server listens), the queue, JSON and OpenAPI.</summary>
    public static IServiceCollection AddVarServer(this IServiceCollection services, ServeOptions options)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var registry = ModelRegistry.Load(options);
        services.AddSingleton(options);
        services.AddSingleton(_ => registry);
        services.AddSingleton<GenerationQueue>();
        services.AddVarServerCors(options);
        services.AddRouting();
        services.Configure<JsonOptions>(o => ApiJson.Configure(o.SerializerOptions));
        services.AddOpenApi(o => o.AddDocumentTransformer((doc, _, _) =>
        {
            doc.Info.Title = "VarSharp generation API";
            doc.Info.Description = "Class-conditional image generation with VAR (next-scale prediction). See docs/web.md.";
            doc.Info.Version = "v1";
            return Task.CompletedTask;
        }).AddSchemaTransformer((schema, context, _) =>
        {
            // The body is read strictly (GenerateRequest): numbers must be JSON numbers, never digit strings, and class
            // is an id or one of the model's class names. The generated schema would say "number or digit string".
            if (context.JsonPropertyInfo is not { } property) return Task.CompletedTask;
            if (property.DeclaringType != typeof(GenerateRequestBody) && property.DeclaringType != typeof(EditRequestBody)) return Task.CompletedTask;
            var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            if (type == typeof(EditRequestBody)) return Task.CompletedTask;   // an object: its own properties are fixed up here
            schema.Pattern = null;
            if (type == typeof(int[]))
            {
                schema.Type = JsonSchemaType.Array;
                if (schema.Items is OpenApiSchema items)
                {
                    items.Type = JsonSchemaType.Integer;
                    items.Pattern = null;
                }
                return Task.CompletedTask;
            }
            schema.Type = property.Name == "class" ? JsonSchemaType.Integer | JsonSchemaType.String
                : type == typeof(double) ? JsonSchemaType.Number
                : type == typeof(int) || type == typeof(long) ? JsonSchemaType.Integer
                : type == typeof(bool) ? JsonSchemaType.Boolean
                : JsonSchemaType.String;
            if (property.Name == "class") schema.Description = "A class id, or one of the model's class names (GET /v1/models).";
            return Task.CompletedTask;
        }).AddOperationTransformer(async (operation, context, ct) =>
        {
            if (!context.Description.ActionDescriptor.EndpointMetadata.OfType<VarEndpoints.JsonBodyDoc>().Any()) return;
            var schema = await context.GetOrCreateSchemaAsync(typeof(GenerateRequestBody), null, ct);
            schema.AdditionalPropertiesAllowed = false;   // unknown fields are refused with a 400
            operation.RequestBody = new OpenApiRequestBody
            {
                Required = true,
                Description = "Every field is optional; see docs/web.md for defaults and limits.",
                Content = new Dictionary<string, OpenApiMediaType> { ["application/json"] = new() { Schema = schema } },
            };
        }));
        return services;
    }
}

/// <summary>Whether the server has started (see the logging filter in <see cref="VarServer.Build"/>).</summary>
internal sealed class StartGate
{
    public volatile bool Started;
}
