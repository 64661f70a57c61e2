package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/export-image-provider/export-image-provider/sdk/go/exportimage"
)

// program is the Pulumi program: one ImageExport, through the SDK generated
// from the export-image plugin's schema (scripts/gen-sdk). Its inputs come
// from the stack's config (set with -config), like examples/basic's:
//
//	imageId (required), bucket (required), format (VMDK), prefix (exports/),
//	tags (a JSON object), waitForCompletion (true)
//
// and the provider's from export-image:* (region, credentials as secrets).
func program(ctx *pulumi.Context) error {
	cfg := config.New(ctx, "")
	format := cfg.Get("format")
	if format == "" {
		format = "VMDK"
	}
	prefix := "exports/"
	if p, err := cfg.Try("prefix"); err == nil {
		prefix = p
	}
	args := &exportimage.ImageExportArgs{
		ImageId:         pulumi.String(cfg.Require("imageId")),
		DiskImageFormat: pulumi.String(format),
		S3Bucket:        pulumi.String(cfg.Require("bucket")),
		S3Prefix:        pulumi.String(prefix),
	}
	if cfg.Get("tags") != "" {
		var tags map[string]string
		if err := cfg.TryObject("tags", &tags); err != nil {
			return err
		}
		args.Tags = pulumi.ToStringMap(tags)
	}
	if wait, err := cfg.TryBool("waitForCompletion"); err == nil {
		args.WaitForCompletion = pulumi.Bool(wait)
	}
	image, err := exportimage.NewImageExport(ctx, "image", args)
	if err != nil {
		return err
	}
	ctx.Export("exportImageTaskId", image.ExportImageTaskId)
	ctx.Export("status", image.Status)
	ctx.Export("s3Uri", image.S3Uri)
	ctx.Export("s3ObjectSize", image.S3ObjectSize)
	return nil
}
