using System.Reflection;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace VarSharp.Web;

/// <summary>
/// Serves the page (wwwroot/, embedded in this assembly) at <c>/</c>: no content root, no external assets. A strict
/// Content-Security-Policy keeps it that way: scripts, styles and connections go to this server only.
/// </summary>
internal static class StaticPage
{
    private const string Prefix = "wwwroot/";

    internal const string ContentSecurityPolicy =
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; " +
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

    private sealed record Asset(string Path, byte[] Bytes, string ContentType, string ETag);

    public static void Map(IEndpointRouteBuilder app)
    {
        var assembly = typeof(StaticPage).Assembly;
        foreach (var name in assembly.GetManifestResourceNames().Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)))
        {
            var asset = Load(assembly, name);
            var handler = (HttpContext ctx) => Serve(ctx, asset);
            app.MapMethods("/" + asset.Path, VarEndpoints.GetAndHead, handler).ExcludeFromDescription();
            if (asset.Path == "index.html") app.MapMethods("/", VarEndpoints.GetAndHead, handler).ExcludeFromDescription();
        }
    }

    private static Asset Load(Assembly assembly, string name)
    {
        using var stream = assembly.GetManifestResourceStream(name)!;
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        var bytes = copy.ToArray();
        var path = name[Prefix.Length..];
        var etag = "\"" + Convert.ToHexString(SHA256.HashData(bytes))[..16].ToLowerInvariant() + "\"";
        return new Asset(path, bytes, ContentType(path), etag);
    }

    private static IResult Serve(HttpContext ctx, Asset asset)
    {
        var headers = ctx.Response.Headers;
        headers.CacheControl = "no-cache";
        headers.ETag = asset.ETag;
        headers.XContentTypeOptions = "nosniff";
        headers.ContentSecurityPolicy = ContentSecurityPolicy;
        headers["Referrer-Policy"] = "no-referrer";
        if (ctx.Request.Headers.IfNoneMatch == asset.ETag) return Results.StatusCode(StatusCodes.Status304NotModified);
        return Results.Bytes(asset.Bytes, asset.ContentType);
    }

    private static string ContentType(string path) => System.IO.Path.GetExtension(path) switch
    {
        ".html" => "text/html; charset=utf-8",
        ".js" => "text/javascript; charset=utf-8",
        ".css" => "text/css; charset=utf-8",
        ".svg" => "image/svg+xml",
        ".png" => "image/png",
        ".ico" => "image/x-icon",
        _ => "application/octet-stream",
    };
}
