namespace VarSharp.Checkpoints;

/// <summary>A safetensors file (or a tensor given to the writer) broke <see cref="Rule"/>; the message is one sentence.</summary>
public sealed class SafeTensorsException : VarSharpException
{
    public SafeTensorsException(SafeTensorsRule rule, string message) : base(OneLine.Of(message)) => Rule = rule;

    public SafeTensorsException(SafeTensorsRule rule, string message, Exception inner) : base(OneLine.Of(message), inner) => Rule = rule;

    public SafeTensorsRule Rule { get; }
}
